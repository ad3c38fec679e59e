"""Fine-tuning: a backbone trained further, with a linear softmax head, on N labeled images.

The transfer table's second yardstick (`experiments.transfer`, ``--config.mode=finetune``): the
linear probe (`eval.linear_probe`) measures frozen features; here the feature function's
parameters move too. Works for any pure, differentiable feature function ``fn(params, images) ->
(B, M)`` — every extractor offers one (``params, fn = fx.trainable(layer, pool)``: RICA's layers
through their normalized output, a convnet's parameters with its batch-norm statistics frozen, in
inference mode)::

    params, fn = fx.trainable("layer2", pool=2)
    res = finetune.finetune(fn, params, x_train, y_train, x_test, y_test, num_classes=10, seed=0)
    res.error            # test error after fine-tuning

What it does, deterministically in ``seed`` (no JAX randomness):

* the head is ``logits = ((f - mean) / scale) @ w + b``, with ``mean`` / ``scale`` the initial
  features' training statistics (standardized as the probe does, then held fixed); ``w``, ``b``
  start (``init_head="probe"``, the default) from the L-BFGS linear probe on the initial features
  (`linear_probe.fit`, the same ``l2``) — linear probing then fine-tuning, so a short schedule
  starts where the probe ends — or from zeros (``init_head="zeros"``);
* loss: mean cross-entropy + ``l2 / 2 * ||w||^2``;
* optax Adam, ``learning_rate`` for the head, ``learning_rate * backbone_lr_scale`` for the
  backbone (0 freezes it);
* ``ceil(epochs * N / batch_size)`` minibatch steps (at most ``max_steps`` when > 0); minibatches
  are consecutive slices of seeded permutations of the N images, one permutation per epoch;
  the batch size is rounded up to a multiple of ``batch_multiple`` (the extractor mesh's ``data``
  axis) so every step compiles once;
* the test error of the fine-tuned network, in fixed-size padded batches.

The jitted step and feature functions are cached per ``fn`` (and the hyperparameters), so calls
with the same ``fn`` — other seeds, label counts, or the random-initialization twin's params of
the same shapes — reuse one compilation.
"""

from __future__ import annotations

import dataclasses
import math
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import optax

from livermore_brain.eval import linear_probe

INIT_HEADS = ("probe", "zeros")


@dataclasses.dataclass(frozen=True)
class FinetuneResult:
  error: float  # test error after fine-tuning (0..1)
  steps: int
  batch_size: int
  loss: float  # mean loss over the last epoch's worth of steps
  params: object = dataclasses.field(repr=False, default=None)  # the fine-tuned backbone
  head: dict = dataclasses.field(repr=False, default=None)


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compiled(fn, lr: float, bb_lr: float, l2: float):
  """``(step, features, (head tx, backbone tx))``, jitted for ``fn`` and these hyperparameters
  (cached)."""
  per_fn = _CACHE.setdefault(fn, {})
  key = (float(lr), float(bb_lr), float(l2))
  if key in per_fn:
    return per_fn[key]
  tx_head, tx_bb = optax.adam(key[0]), optax.adam(key[1])

  def head_logits(params, head, x, mean, scale):
    f = fn(params, x)
    return ((f - mean) / scale) @ head["w"] + head["b"]

  def loss_fn(params, head, x, y, mean, scale):
    logits = head_logits(params, head, x, mean, scale)
    ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
    return ce + 0.5 * key[2] * jnp.sum(jnp.square(head["w"]))

  def step(params, head, opt, x, y, mean, scale):
    loss, (gp, gh) = jax.value_and_grad(loss_fn, argnums=(0, 1))(params, head, x, y, mean, scale)
    uh, oh = tx_head.update(gh, opt[0], head)
    head = optax.apply_updates(head, uh)
    if key[1] > 0:
      ub, ob = tx_bb.update(gp, opt[1], params)
      params = optax.apply_updates(params, ub)
    else:
      ob = opt[1]
    return params, head, (oh, ob), loss

  out = (jax.jit(step), jax.jit(fn), (tx_head, tx_bb))
  per_fn[key] = out
  return out


def _padded_batches(x: np.ndarray, bs: int):
  """``(batch, m)`` over ``x`` in fixed-size batches of ``bs``, the last padded by repetition."""
  for lo in range(0, x.shape[0], bs):
    part = x[lo : lo + bs]
    m = part.shape[0]
    if m < bs:
      part = np.concatenate([part, np.repeat(part[-1:], bs - m, axis=0)])
    yield part, m


def _round_up(n: int, k: int) -> int:
  return -(-int(n) // int(k)) * int(k)


def finetune(
  fn,
  params,
  train_images,
  train_labels,
  test_images,
  test_labels,
  num_classes: int | None = None,
  *,
  seed: int = 0,
  epochs: float = 10,
  max_steps: int = 0,
  batch_size: int = 64,
  learning_rate: float = 1e-2,
  backbone_lr_scale: float = 0.1,
  l2: float = 1e-4,
  batch_multiple: int = 1,
  eval_batch_size: int = 256,
  init_head: str = "probe",
  probe_max_iter: int = 200,
  pad_to: int | None = None,
) -> FinetuneResult:
  """Train ``params`` (through ``fn``) and a linear softmax head on the labeled training images;
  return the test error (see the module docstring). ``pad_to`` goes to the initial probe's
  `linear_probe.fit` (calls with several N then share its compilation)."""
  xtr = np.asarray(train_images, np.float32)
  xte = np.asarray(test_images, np.float32)
  ytr = np.asarray(train_labels).reshape(-1).astype(np.int32)
  yte = np.asarray(test_labels).reshape(-1).astype(np.int32)
  n = xtr.shape[0]
  if n == 0 or xte.shape[0] == 0:
    raise ValueError("finetune needs at least one training and one test image")
  if ytr.shape[0] != n or yte.shape[0] != xte.shape[0]:
    raise ValueError(
      f"finetune: {ytr.shape[0]} / {yte.shape[0]} labels for {n} / {xte.shape[0]} images"
    )
  if float(epochs) <= 0 or int(batch_size) <= 0:
    raise ValueError(f"finetune needs epochs > 0 and batch_size > 0, got {epochs}, {batch_size}")
  if float(learning_rate) <= 0 or float(backbone_lr_scale) < 0:
    raise ValueError(
      f"finetune needs learning_rate > 0 and backbone_lr_scale >= 0, got {learning_rate}, "
      f"{backbone_lr_scale}"
    )
  if init_head not in INIT_HEADS:
    raise ValueError(f"init_head must be one of {INIT_HEADS}, got {init_head!r}")
  c = int(num_classes if num_classes is not None else max(ytr.max(), yte.max()) + 1)
  mult = max(1, int(batch_multiple))
  bs = _round_up(min(int(batch_size), n), mult)
  ebs = _round_up(max(1, min(int(eval_batch_size), max(n, xte.shape[0]))), mult)
  steps = max(1, math.ceil(float(epochs) * n / bs))
  if int(max_steps) > 0:
    steps = min(steps, int(max_steps))
  step, feats, (tx_head, tx_bb) = _compiled(
    fn, learning_rate, learning_rate * backbone_lr_scale, l2
  )

  def features(p, x):
    return np.concatenate([np.asarray(feats(p, b))[:m] for b, m in _padded_batches(x, ebs)])

  def predict(p, head, x, mean, scale):  # the head in numpy: no second compilation
    z = (features(p, x) - np.asarray(mean)) / np.asarray(scale)
    return np.argmax(z @ np.asarray(head["w"]) + np.asarray(head["b"]), axis=1)

  f0 = features(params, xtr)
  if init_head == "probe":
    probe = linear_probe.fit(f0, ytr, c, l2=float(l2), max_iter=int(probe_max_iter), pad_to=pad_to)
    mean, scale, w, b = probe.mean, probe.scale, probe.w, probe.b
  else:  # the probe's standardization, a zero head
    mean = f0.mean(axis=0, dtype=np.float64)
    std = f0.std(axis=0, dtype=np.float64)
    scale = np.where(std > 1e-6 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    w, b = np.zeros((f0.shape[1], c), np.float32), np.zeros((c,), np.float32)
  mean, scale = jnp.asarray(mean, jnp.float32), jnp.asarray(scale, jnp.float32)
  head = {"w": jnp.asarray(w, jnp.float32), "b": jnp.asarray(b, jnp.float32)}
  opt = (tx_head.init(head), tx_bb.init(params))

  rng = np.random.default_rng(int(seed))
  order = np.zeros((0,), np.int64)
  losses = []
  for _ in range(steps):
    while order.shape[0] < bs:
      order = np.concatenate([order, rng.permutation(n)])
    idx, order = order[:bs], order[bs:]
    params, head, opt, loss = step(params, head, opt, xtr[idx], ytr[idx], mean, scale)
    losses.append(loss)
  last = max(1, min(steps, math.ceil(n / bs)))
  loss = float(np.mean([float(v) for v in losses[-last:]]))
  if not np.isfinite(loss):
    raise ValueError(f"fine-tuning diverged (loss {loss}); lower --config.finetune.learning_rate")
  return FinetuneResult(
    error=float(np.mean(predict(params, head, xte, mean, scale) != yte)),
    steps=int(steps),
    batch_size=int(bs),
    loss=loss,
    params=params,
    head=head,
  )
