"""Nearest-neighbour tag transfer: TagProp (Guillaumin et al., ICCV 2009, sigma-ML, distance-based
weights) and JEC (Makadia et al., ECCV 2008).

Both start from ``M`` base distances between images (one per feature block and metric: squared L2
or L1 of standardized features), each divided by its mean over random pairs so they are on one
scale, and from each image's ``K`` nearest training images under their equal-weighted sum.

TagProp: image ``i``'s neighbour ``j`` gets weight ``pi_ij = softmax_j(-sum_m w_m d_m(i, j))``
with learned ``w >= 0`` (the *distance weights*); the tag evidence is ``x_it = sum_j pi_ij y_jt``
and ``p(y_it = 1) = sigma(alpha_t x_it + beta_t)`` (a per-tag sigmoid, the sigma-ML variant that
boosts rare tags). ``w, alpha, beta`` maximize the log-likelihood of the training tags with each
training image's neighbours taken among the others (leave-one-out), by full-batch Adam.

JEC: the first neighbour's tags, ordered by their training frequency; then tags of neighbours
2..K by local frequency times co-occurrence with the first neighbour's tags. Returned as scores,
so the top ``n`` of a row is JEC's annotation.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

METRICS = ("l2", "l1")


def _pairwise(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
  if metric == "l2":
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)
  if metric == "l1":  # in slices of queries: (q, Nb, F) temporaries of at most ~16M values
    step = max(1, 16_000_000 // max(b.shape[0] * b.shape[1], 1))
    return np.concatenate(
      [np.abs(a[i : i + step, None, :] - b[None]).sum(-1) for i in range(0, len(a), step)]
    )
  raise ValueError(f"distance {metric!r}: use one of {METRICS}")


@dataclasses.dataclass
class BaseDistances:
  """Standardization and mean scales of ``M`` base distances, fitted on the training features."""

  blocks: list[tuple[np.ndarray, np.ndarray]]  # per feature block: (mean, std)
  metrics: tuple[str, ...]
  scales: np.ndarray  # (M,) one per (block, metric)

  @classmethod
  def fit(cls, feats: list[np.ndarray], metrics=("l2",), seed: int = 0, pairs: int = 2000):
    blocks = [(f.mean(0), f.std(0) + 1e-6) for f in feats]
    z = [(f - m) / s for f, (m, s) in zip(feats, blocks)]
    rng = np.random.default_rng(seed)
    n = feats[0].shape[0]
    i, j = rng.integers(0, n, pairs), rng.integers(0, n, pairs)
    scales = []
    for x in z:
      for metric in metrics:
        d = np.sum((x[i] - x[j]) ** 2, 1) if metric == "l2" else np.sum(np.abs(x[i] - x[j]), 1)
        scales.append(max(float(d.mean()), 1e-12))
    return cls(blocks, tuple(metrics), np.asarray(scales, np.float32))

  def standardize(self, feats: list[np.ndarray]) -> list[np.ndarray]:
    return [((f - m) / s).astype(np.float32) for f, (m, s) in zip(feats, self.blocks)]

  def neighbours(self, query, base, k: int, exclude_self: bool = False, chunk: int = 512):
    """``(idx (N, K), d (N, K, M))``: each query's ``k`` nearest ``base`` images under the
    equal-weighted sum of the scaled base distances, and their ``M`` distances."""
    q, b = self.standardize(query), self.standardize(base)
    n = q[0].shape[0]
    k = min(int(k), b[0].shape[0] - int(exclude_self))
    idx, dist = np.zeros((n, k), np.int64), np.zeros((n, k, len(self.scales)), np.float32)
    for lo in range(0, n, chunk):
      hi = min(lo + chunk, n)
      ds = [_pairwise(qb[lo:hi], bb, metric) for qb, bb in zip(q, b) for metric in self.metrics]
      ds = np.stack(ds, -1) / self.scales  # (c, Nb, M)
      total = ds.sum(-1)
      if exclude_self:
        total[np.arange(hi - lo), np.arange(lo, hi)] = np.inf
      top = np.argsort(total, axis=1, kind="stable")[:, :k]
      idx[lo:hi] = top
      dist[lo:hi] = np.take_along_axis(ds, top[:, :, None], axis=1)
    return idx, dist


def _probs(params, dist, nbr_tags):
  w = jax.nn.softplus(params["w"])
  pi = jax.nn.softmax(-jnp.einsum("nkm,m->nk", dist, w), axis=1)
  x = jnp.einsum("nk,nkt->nt", pi, nbr_tags)
  return jax.nn.sigmoid(params["alpha"] * x + params["beta"]), x


@dataclasses.dataclass
class TagProp:
  """A fitted sigma-ML TagProp model over a training set's tags."""

  base: BaseDistances
  train_feats: list[np.ndarray]
  train_tags: np.ndarray  # bool (N, T)
  k: int
  params: dict
  history: list

  @property
  def weights(self) -> np.ndarray:
    """The learned distance weights ``w_m >= 0`` (one per base distance)."""
    return np.asarray(jax.nn.softplus(self.params["w"]))

  @classmethod
  def fit(cls, feats, tags, *, k=100, metrics=("l2",), steps=300, learning_rate=0.05, seed=0):
    feats = [np.asarray(f, np.float32) for f in feats]
    tags = np.asarray(tags, bool)
    base = BaseDistances.fit(feats, metrics, seed)
    idx, dist = base.neighbours(feats, feats, k, exclude_self=True)
    nbr = jnp.asarray(tags[idx], jnp.float32)  # (N, K, T)
    y = jnp.asarray(tags, jnp.float32)
    m, t = dist.shape[-1], tags.shape[1]
    params = {
      "w": jnp.full((m,), np.log(np.expm1(1.0)), jnp.float32),  # softplus^-1(1)
      "alpha": jnp.ones((t,), jnp.float32),
      "beta": jnp.zeros((t,), jnp.float32),
    }
    tx = optax.adam(learning_rate)
    dist_j = jnp.asarray(dist)

    def nll(p):
      prob, _ = _probs(p, dist_j, nbr)
      prob = jnp.clip(prob, 1e-7, 1 - 1e-7)
      return -jnp.mean(y * jnp.log(prob) + (1 - y) * jnp.log(1 - prob))

    @jax.jit
    def step(p, s):
      loss, g = jax.value_and_grad(nll)(p)
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s, loss

    state, history = tx.init(params), []
    for i in range(int(steps)):
      params, state, loss = step(params, state)
      if i % 50 == 0 or i == steps - 1:
        history.append((i, float(loss)))
    return cls(base, feats, tags, int(k), jax.device_get(params), history)

  def predict(self, feats) -> np.ndarray:
    """``p(y_t = 1)`` for every query image and tag, ``(N, T)``."""
    idx, dist = self.base.neighbours(
      [np.asarray(f, np.float32) for f in feats], self.train_feats, self.k
    )
    prob, _ = _probs(self.params, jnp.asarray(dist), jnp.asarray(self.train_tags[idx], jnp.float32))
    return np.asarray(prob)


def jec_scores(base: BaseDistances, train_feats, train_tags, feats, k: int = 10) -> np.ndarray:
  """JEC label transfer as scores ``(N, T)``: the first neighbour's tags score in (2, 3], ordered
  by training frequency; the others in [0, 1): local frequency among neighbours 2..K times
  (1 + co-occurrence with the first neighbour's tags)/2, normalized."""
  train_tags = np.asarray(train_tags, bool)
  idx, _ = base.neighbours(feats, train_feats, k)
  freq = train_tags.mean(0)
  y = train_tags.astype(np.float64)
  cooc = (y.T @ y) / np.maximum(y.sum(0), 1)[:, None]  # cooc[t, u] = P(u | t)
  first = train_tags[idx[:, 0]].astype(np.float64)  # (N, T)
  rest = train_tags[idx[:, 1:]].mean(1) if idx.shape[1] > 1 else np.zeros_like(first)
  with_first = first @ cooc / np.maximum(first.sum(1, keepdims=True), 1)
  other = rest * (1 + with_first) / 2
  other = other / (other.max() + 1e-9) * 0.999
  return np.where(first > 0, 2.0 + freq / (freq.max() + 1e-9), other)
