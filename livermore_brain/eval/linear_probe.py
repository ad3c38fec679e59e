"""Linear probe: how much label information do frozen features carry, linearly?

The LDRD report's Fig. 4 measures unsupervised features by training a linear classifier on a
small number of labels (1k or 10k) and reporting the test error. This module does that for any
features ``(N, ...)`` (flattened to ``(N, D)``):

* features are standardized with the *training* mean and standard deviation (constant features
  get scale 1, so they stay constant and harmless);
* the classifier is multinomial logistic regression, ``loss = mean cross-entropy +
  l2 / 2 * ||W||^2`` (the bias is not penalized), trained full-batch from zeros in JAX with optax
  L-BFGS (zoom line search) until the gradient norm falls below ``tol`` or ``max_iter``
  iterations — deterministic, no minibatch noise, no learning rate to tune. ``optimizer='adam'``
  runs ``max_iter`` full-batch Adam steps instead;
* ``l2`` may be a sequence: `fit` then holds out a class-balanced ``holdout`` fraction of the
  training examples, keeps the value with the lowest held-out error (ties: the larger ``l2``),
  and refits on all of them;
* `transfer_table` trains one probe per (feature source, label count, seed): for each seed the
  same class-balanced, nested subsets of the training set for every source (the 1k subset is a
  prefix of the 10k subset; another seed draws other subsets), capping the count at what is
  available and recording the count actually used as ``n_train``; each cell is the mean error
  over the seeds with its sample standard deviation (`summarize`) and the per-seed errors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

OPTIMIZERS = ("lbfgs", "adam")


@dataclasses.dataclass(frozen=True)
class LinearProbe:
  """A trained probe: ``logits = ((x - mean) / scale) @ w + b``."""

  mean: np.ndarray  # (D,)
  scale: np.ndarray  # (D,)
  w: np.ndarray  # (D, C)
  b: np.ndarray  # (C,)
  l2: float
  iterations: int
  loss: float  # final regularized training loss
  validation: dict = dataclasses.field(default_factory=dict)  # {l2: held-out error} if searched

  @property
  def num_classes(self) -> int:
    return self.w.shape[1]


def _flat(features, name: str = "features") -> np.ndarray:
  x = np.asarray(features)
  if x.ndim < 2:
    raise ValueError(f"{name} must be (N, D) (examples first), got shape {x.shape}")
  return x.reshape(x.shape[0], -1).astype(np.float32, copy=False)


def _labels(labels, n: int, num_classes: int | None = None, name: str = "labels") -> np.ndarray:
  y = np.asarray(labels).reshape(-1)
  if y.shape[0] != n:
    raise ValueError(f"{name}: {y.shape[0]} labels for {n} feature rows")
  if not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
    raise ValueError(f"{name} must be non-negative integers, got dtype {y.dtype}")
  if num_classes is not None and y.size and y.max() >= num_classes:
    raise ValueError(f"{name} contain class {y.max()} but num_classes={num_classes}")
  return y.astype(np.int32)


@jax.jit
def _loss(params, x, y, mask, l2):
  """Mean cross-entropy over the rows with ``mask`` 1 (padding rows have 0) + the L2 term."""
  logits = x @ params["w"] + params["b"]
  nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1)[:, 0]
  ce = jnp.sum(mask * nll) / jnp.sum(mask)
  return ce + 0.5 * l2 * jnp.sum(jnp.square(params["w"]))


@jax.jit
def _train_lbfgs(params, x, y, mask, l2, max_iter, tol):
  fun = lambda p: _loss(p, x, y, mask, l2)
  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(fun)

  def step(carry):
    p, state = carry
    value, grad = value_and_grad(p, state=state)
    updates, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=fun)
    return optax.apply_updates(p, updates), state

  def cond(carry):
    _, state = carry
    it = otu.tree_get(state, "count")
    gnorm = otu.tree_norm(otu.tree_get(state, "grad"))
    return (it == 0) | ((it < max_iter) & (gnorm >= tol))

  params, state = jax.lax.while_loop(cond, step, (params, opt.init(params)))
  return params, otu.tree_get(state, "count"), fun(params)


def _train_adam(params, x, y, mask, l2, max_iter, learning_rate):
  opt = optax.adam(learning_rate)

  @jax.jit
  def run(params):
    def step(carry, _):
      p, s = carry
      g = jax.grad(_loss)(p, x, y, mask, l2)
      u, s = opt.update(g, s, p)
      return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=max_iter)
    return params, _loss(params, x, y, mask, l2)

  params, loss = run(params)
  return params, max_iter, loss


def fit(
  features,
  labels,
  num_classes: int | None = None,
  *,
  l2: float | Sequence[float] = 1e-3,
  optimizer: str = "lbfgs",
  max_iter: int = 500,
  tol: float = 1e-5,
  learning_rate: float = 1e-2,
  holdout: float = 0.2,
  seed: int = 0,
  pad_to: int | None = None,
) -> LinearProbe:
  """Train an L2-regularized multinomial logistic-regression probe on standardized features.

  ``pad_to``: the optimizer sees at least this many rows, the extra ones zero and masked out of
  the loss (the same probe, up to float rounding): fits of different sizes then share one
  compilation (`transfer_table` pads every fit of a source to its largest label count).
  """
  x = _flat(features)
  y = _labels(labels, x.shape[0], num_classes)
  if x.shape[0] == 0:
    raise ValueError("fit needs at least one training example")
  c = int(num_classes if num_classes is not None else y.max() + 1)
  if optimizer not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}")
  kw = dict(
    optimizer=optimizer, max_iter=max_iter, tol=tol, learning_rate=learning_rate, pad_to=pad_to
  )
  if not np.isscalar(l2):
    grid = [float(v) for v in l2]
    if not grid:
      raise ValueError("l2 grid is empty")
    if len(grid) == 1:
      return fit(x, y, c, l2=grid[0], **kw)
    order = label_subset(y, x.shape[0], seed=seed)
    n_val = int(round(holdout * x.shape[0]))
    if not 0 < n_val < x.shape[0]:
      raise ValueError(f"holdout={holdout} leaves no training or no validation examples")
    val, tr = order[:n_val], order[n_val:]
    errs = {v: error_rate(fit(x[tr], y[tr], c, l2=v, **kw), x[val], y[val]) for v in grid}
    best = min(sorted(grid, reverse=True), key=lambda v: errs[v])
    return dataclasses.replace(fit(x, y, c, l2=best, **kw), validation=errs)
  mean = x.mean(axis=0, dtype=np.float64)
  std = x.std(axis=0, dtype=np.float64)
  scale = np.where(std > 1e-6 * np.maximum(1.0, np.abs(mean)), std, 1.0)
  xs = ((x - mean) / scale).astype(np.float32)
  pad = max(0, int(pad_to or 0) - x.shape[0])
  mask = np.concatenate([np.ones(x.shape[0], np.float32), np.zeros(pad, np.float32)])
  xs = jnp.asarray(np.concatenate([xs, np.zeros((pad, xs.shape[1]), np.float32)]))
  yj = jnp.asarray(np.concatenate([y, np.zeros(pad, np.int32)]))
  params = {"w": jnp.zeros((x.shape[1], c), jnp.float32), "b": jnp.zeros((c,), jnp.float32)}
  l2v, mj = jnp.float32(l2), jnp.asarray(mask)
  if optimizer == "lbfgs":
    params, it, loss = _train_lbfgs(params, xs, yj, mj, l2v, jnp.int32(max_iter), jnp.float32(tol))
  else:
    params, it, loss = _train_adam(params, xs, yj, mj, l2v, max_iter, learning_rate)
  return LinearProbe(
    mean.astype(np.float32),
    scale.astype(np.float32),
    np.asarray(params["w"]),
    np.asarray(params["b"]),
    float(l2),
    int(it),
    float(loss),
  )


def logits(model: LinearProbe, features) -> np.ndarray:
  x = _flat(features)
  if x.shape[1] != model.mean.shape[0]:
    raise ValueError(f"probe expects {model.mean.shape[0]} features per example, got {x.shape[1]}")
  return ((x - model.mean) / model.scale) @ model.w + model.b


def predict(model: LinearProbe, features) -> np.ndarray:
  return np.argmax(logits(model, features), axis=1)


def error_rate(model: LinearProbe, features, labels) -> float:
  """Fraction of misclassified examples (0..1)."""
  x = _flat(features)
  y = _labels(labels, x.shape[0])
  if x.shape[0] == 0:
    raise ValueError("error_rate needs at least one example")
  return float(np.mean(predict(model, x) != y))


def label_subset(labels, n: int, seed: int = 0, balanced: bool = True) -> np.ndarray:
  """Indices of ``n`` training examples, deterministic in ``seed``, nested in ``n``.

  ``balanced``: classes take turns (round robin in a seeded random order), so every class gets
  ``n // C`` or one more example while it has any left; otherwise a plain seeded permutation.
  """
  y = np.asarray(labels).reshape(-1)
  n = min(int(n), y.shape[0])
  perm = np.random.default_rng(seed).permutation(y.shape[0])
  if not balanced:
    return perm[:n]
  yp = y[perm]
  o = np.argsort(yp, kind="stable")
  ys = yp[o]
  rank = np.empty(y.shape[0], np.int64)
  rank[o] = np.arange(y.shape[0]) - np.searchsorted(ys, ys, side="left")  # rank within class
  return perm[np.argsort(rank, kind="stable")[:n]]


def summarize(errors: Sequence[float]) -> tuple[float, float | None]:
  """``(mean, sd)`` of per-seed errors; ``sd`` is the sample standard deviation (ddof=1), None
  for a single value."""
  e = np.asarray(errors, np.float64).reshape(-1)
  if e.size == 0:
    raise ValueError("summarize needs at least one value")
  return float(e.mean()), (float(e.std(ddof=1)) if e.size > 1 else None)


def cell(errors: Sequence[float], seeds: Sequence[int], **extra) -> dict:
  """A table cell: ``{"error": mean, "sd": sd, "errors": [...], "seeds": [...], **extra}``."""
  mean, sd = summarize(errors)
  return {
    "error": mean,
    "sd": sd,
    "errors": [float(v) for v in errors],
    "seeds": [int(s) for s in seeds],
    **extra,
  }


def transfer_table(
  feature_sources: Mapping[str, tuple],
  train_labels,
  test_labels,
  label_counts: Sequence[int] = (1000, 10000),
  *,
  num_classes: int | None = None,
  seed: int = 0,
  seeds: Sequence[int] | None = None,
  balanced: bool = True,
  **fit_kwargs,
) -> dict:
  """Probe test error per feature source and number of training labels, over label subsets.

  ``feature_sources``: ``{name: (train_features, test_features)}``, rows aligned with
  ``train_labels`` / ``test_labels``. ``seeds`` (default ``[seed]``): one probe per seed, each on
  ``label_subset(train_labels, n, seed)`` (nested in ``n``, shared by every source), its l2
  holdout split seeded the same. Returns ``{name: {str(n): {"error", "sd", "errors", "seeds",
  "n_train", "n_test", "l2"}}}``: ``error`` the mean over seeds, ``sd`` their sample standard
  deviation (ddof=1; None for one seed), ``errors`` / ``l2`` per seed; ``n_train`` is
  ``min(n, available)``. ``fit_kwargs`` go to `fit` (e.g. ``l2=(1e-4, 1e-3, 1e-2, 1e-1)`` to
  pick l2 on a holdout).
  """
  ytr = np.asarray(train_labels).reshape(-1)
  yte = np.asarray(test_labels).reshape(-1)
  if num_classes is None:
    num_classes = int(max(ytr.max(), yte.max())) + 1
  for n in label_counts:
    if int(n) <= 0:
      raise ValueError(f"label counts must be positive, got {n}")
  seeds = [int(seed)] if seeds is None else [int(s) for s in seeds]
  if not seeds:
    raise ValueError("seeds is empty; give at least one probe seed")
  subsets = {
    (int(n), s): label_subset(ytr, n, seed=s, balanced=balanced)
    for n in label_counts
    for s in seeds
  }
  pad_to = max(int(v.shape[0]) for v in subsets.values())  # one compilation per source
  table = {}
  for name, pair in feature_sources.items():
    if len(pair) != 2:
      raise ValueError(f"feature source {name!r} must be (train_features, test_features)")
    xtr, xte = _flat(pair[0], f"{name} train"), _flat(pair[1], f"{name} test")
    _labels(ytr, xtr.shape[0], num_classes, f"{name}: train labels")
    _labels(yte, xte.shape[0], num_classes, f"{name}: test labels")
    table[name] = {}
    for n in label_counts:
      errors, l2s = [], []
      for s in seeds:
        idx = subsets[(int(n), s)]
        model = fit(xtr[idx], ytr[idx], num_classes, seed=s, pad_to=pad_to, **fit_kwargs)
        errors.append(error_rate(model, xte, yte))
        l2s.append(model.l2)
      table[name][str(int(n))] = cell(
        errors,
        seeds,
        n_train=int(subsets[(int(n), seeds[0])].shape[0]),
        n_test=int(xte.shape[0]),
        l2=l2s,
      )
  return table


def format_cell(entry: Mapping, column: str | None = None) -> str:
  """``"7.23 ± 0.41%"`` (``"7.23%"`` without an sd); `` (n=4000)`` appended when the cell's
  ``n_train`` differs from its column's label count."""
  mean, sd = 100 * entry["error"], entry.get("sd")
  text = f"{mean:.2f}%" if sd is None else f"{mean:.2f} ± {100 * sd:.2f}%"
  if column is not None and str(entry.get("n_train", column)) != str(column):
    text += f" (n={entry['n_train']})"
  return text


def to_markdown(table: Mapping[str, Mapping[str, Mapping]], title: str = "features") -> str:
  """A markdown table: one row per source, one column per label count, cells ``mean ± sd %``
  (`format_cell`; ``—`` where a row has no value).

  A cell whose ``n_train`` differs from its column's label count says so: ``1.90 ± 0.10%
  (n=4000)``.
  """
  cols: list[str] = []
  for row in table.values():
    cols += [k for k in row if k not in cols]
  lines = [
    "| " + " | ".join([title] + [f"{c} labels" for c in cols]) + " |",
    "|" + "---|" * (len(cols) + 1),
  ]
  for name, row in table.items():
    cells = [name] + [format_cell(row[c], c) if c in row else "—" for c in cols]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"
