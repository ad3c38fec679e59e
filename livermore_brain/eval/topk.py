"""Top-k stimuli per neuron, streamed, and "most selective neuron" rankings.

The paper's Fig. 5 shows the top-5 stimuli of layer-3 neurons over 2 million images: activations
never fit in memory, so everything here is a *streaming accumulator* fed one batch ``(B, M)`` at a
time (B examples, M neurons), holding O(k * M) state:

* `TopK` keeps, per neuron, the k highest activations seen so far and the example indices that
  produced them; each batch is merged into the running list (concatenate, stable sort, keep k).
  Results are sorted by decreasing activation; equal activations keep the example that arrived
  first (for in-order streaming: the lower example index).
* `Moments` keeps count, mean and central moments up to the fourth order per neuron, merged
  batch by batch with the exact pairwise formulas of Chan et al. / Pebay (float64), so the
  streamed statistics equal those of the whole array.
* `NeuronStats` feeds both and scores neurons:

  - ``"topk_z"`` (default): ``(mean of a neuron's top-k activations - its mean) / its std`` —
    how far above its typical response its best stimuli lie, in standard deviations. It looks only
    at the high tail, which is exactly what a top-k stimulus figure shows.
  - ``"kurtosis"``: excess kurtosis of the neuron's activation distribution (lifetime sparsity:
    a neuron that is quiet on most inputs and strong on a few has heavy tails). It is sign-blind:
    a heavy *low* tail scores as high as a heavy high tail.

  Degenerate (constant) neurons score 0 for ``topk_z`` (any real neuron scores >= 0) and -3 for
  ``kurtosis`` (below the -2 any real distribution reaches), so they rank last.

Activations are taken as given: for sign-symmetric features (raw RICA encodings ``alpha W x``)
the "top" stimuli are those with the largest *signed* response; pass ``-a`` or ``abs(a)`` to
study the other tail or both.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

SCORES = ("topk_z", "kurtosis")


def _as_batch(batch, m: int | None) -> np.ndarray:
  a = np.asarray(batch)
  if a.ndim < 2:
    raise ValueError(f"a batch of activations must be (B, M) (examples, neurons), got {a.shape}")
  a = a.reshape(a.shape[0], -1)
  if m is not None and a.shape[1] != m:
    raise ValueError(f"batch has {a.shape[1]} neurons, earlier batches had {m}")
  if not np.issubdtype(a.dtype, np.floating):
    a = a.astype(np.float64)
  if np.isnan(a).any():
    raise ValueError("activations contain NaN")
  return a


class TopK:
  """Running top-k activations and example indices per neuron (memory O(k * M))."""

  def __init__(self, k: int):
    if not isinstance(k, int | np.integer) or k <= 0:
      raise ValueError(f"k must be a positive integer, got {k!r}")
    self.k = int(k)
    self.count = 0  # examples seen; the default index of the next example
    self._values: np.ndarray | None = None  # (M, <=k), descending
    self._indices: np.ndarray | None = None

  def update(self, batch, offset: int | None = None) -> TopK:
    """Merge a batch ``(B, M)``; its rows are examples ``offset .. offset + B - 1``.

    ``offset`` defaults to the number of examples seen so far (in-order streaming).
    """
    m = None if self._values is None else self._values.shape[0]
    a = _as_batch(batch, m)
    b = a.shape[0]
    start = self.count if offset is None else int(offset)
    idx = np.broadcast_to(np.arange(start, start + b, dtype=np.int64), (a.shape[1], b))
    vals = a.T
    if self._values is not None:
      vals = np.concatenate([self._values, vals], axis=1)
      idx = np.concatenate([self._indices, idx], axis=1)
    keep = np.argsort(-vals, axis=1, kind="stable")[:, : self.k]
    self._values = np.take_along_axis(vals, keep, axis=1)
    self._indices = np.take_along_axis(idx, keep, axis=1)
    self.count = max(self.count, start + b)
    return self

  def result(self) -> tuple[np.ndarray, np.ndarray]:
    """``(values, indices)``, each ``(M, min(k, examples seen))``, by decreasing activation."""
    if self._values is None:
      raise ValueError("TopK.result() called before any batch was added")
    return self._values.copy(), self._indices.copy()


class Moments:
  """Running count, mean and central moment sums M2, M3, M4 per neuron (float64)."""

  def __init__(self):
    self.n = 0
    self.mean = self.m2 = self.m3 = self.m4 = None

  def update(self, batch) -> Moments:
    a = _as_batch(batch, None if self.mean is None else self.mean.shape[0]).astype(np.float64)
    nb = a.shape[0]
    if nb == 0:
      return self
    mb = a.mean(axis=0)
    d = a - mb
    d2 = d * d
    b2, b3, b4 = d2.sum(0), (d2 * d).sum(0), (d2 * d2).sum(0)
    if self.mean is None:
      self.n, self.mean, self.m2, self.m3, self.m4 = nb, mb, b2, b3, b4
      return self
    na, n = self.n, self.n + nb
    delta = mb - self.mean
    a2, a3, a4 = self.m2, self.m3, self.m4
    self.mean = self.mean + delta * nb / n
    self.m4 = (
      a4
      + b4
      + delta**4 * na * nb * (na * na - na * nb + nb * nb) / n**3
      + 6 * delta**2 * (na * na * b2 + nb * nb * a2) / n**2
      + 4 * delta * (na * b3 - nb * a3) / n
    )
    self.m3 = a3 + b3 + delta**3 * na * nb * (na - nb) / n**2 + 3 * delta * (na * b2 - nb * a2) / n
    self.m2 = a2 + b2 + delta**2 * na * nb / n
    self.n = n
    return self

  def _check(self):
    if self.mean is None:
      raise ValueError("Moments used before any batch was added")

  @property
  def var(self) -> np.ndarray:
    """Population variance per neuron."""
    self._check()
    return self.m2 / self.n

  @property
  def std(self) -> np.ndarray:
    return np.sqrt(self.var)

  def kurtosis(self) -> np.ndarray:
    """Excess kurtosis ``n * M4 / M2**2 - 3`` per neuron (-3 for constant neurons)."""
    self._check()
    ok = self.m2 > 1e-12 * np.maximum(1.0, self.n * self.mean**2)
    safe = np.where(ok, self.m2, 1.0)
    return np.where(ok, self.n * self.m4 / safe**2 - 3.0, -3.0)


class NeuronStats:
  """`TopK` plus `Moments` over one stream of activation batches; scores and ranks neurons."""

  def __init__(self, k: int):
    self.topk = TopK(k)
    self.moments = Moments()

  def update(self, batch, offset: int | None = None) -> NeuronStats:
    a = _as_batch(batch, None)
    self.topk.update(a, offset)
    self.moments.update(a)
    return self

  def scores(self, method: str = "topk_z") -> np.ndarray:
    """Per-neuron selectivity score (see the module docstring for ``method``)."""
    if method == "kurtosis":
      return self.moments.kurtosis()
    if method != "topk_z":
      raise ValueError(f"unknown selectivity score {method!r}; choose one of {SCORES}")
    values, _ = self.topk.result()
    mean, std = self.moments.mean, self.moments.std
    ok = std > 1e-12 * np.maximum(1.0, np.abs(mean))
    z = (values.astype(np.float64).mean(axis=1) - mean) / np.where(ok, std, 1.0)
    return np.where(ok, z, 0.0)

  def most_selective(self, n: int | None = None, method: str = "topk_z") -> np.ndarray:
    """Neuron ids by decreasing score (the first ``n`` of them when given)."""
    return rank(self.scores(method), n)


def rank(scores, n: int | None = None) -> np.ndarray:
  """Indices of ``scores`` from highest to lowest (stable), the first ``n`` when given."""
  order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
  return order if n is None else order[:n]


def _batches(activations) -> Iterable:
  if isinstance(activations, np.ndarray) or hasattr(activations, "__array__"):
    return [activations]
  return activations


def top_k(activations, k: int) -> tuple[np.ndarray, np.ndarray]:
  """Top-k ``(values, indices)`` per neuron from an array ``(N, M)`` or an iterable of batches."""
  acc = TopK(k)
  for batch in _batches(activations):
    acc.update(batch)
  return acc.result()


def neuron_stats(activations, k: int) -> NeuronStats:
  """`NeuronStats` from an array ``(N, M)`` or an iterable of ``(B, M)`` batches (in order)."""
  acc = NeuronStats(k)
  for batch in _batches(activations):
    acc.update(batch)
  return acc
