"""Single-neuron selectivity: the best one-threshold classifier per neuron (Le et al. 2012).

Le et al. measured their "face neuron" by asking, for every neuron, how well a *single threshold*
on its activation separates faces from non-faces, and reporting the best neuron's accuracy
against the chance rate. `best_threshold` computes that exactly for every neuron at once:

* sort each neuron's activations once (``O(N log N)`` per neuron, vectorized over neurons);
* a threshold between sorted positions ``i-1`` and ``i`` predicts the first ``i`` examples
  negative and the rest positive ("high => positive", polarity ``+1``); with ``c_i`` the number of
  positives among the first ``i``, it is right on ``(i - c_i) + (P - c_i)`` examples;
* the opposite rule ("low => positive", polarity ``-1``) is its exact complement, right on
  ``N - that``;
* a split is only allowed where the sorted values differ (``a[i-1] < a[i]``) or at the ends, so a
  threshold never separates equal activations (ties are handled exactly).

Prediction rule for a result (`predict`): polarity ``+1`` predicts positive iff
``activation > threshold``; polarity ``-1`` predicts positive iff ``activation <= threshold``
(the exact complement, so both polarities share one threshold). Thresholds are midpoints between
neighbouring distinct activations (computed in float64), so they generalize sensibly to new data.

Works for any features ``(N, M)`` — RICA encodings, a CNN's penultimate layer, pixels as a
baseline. For multiclass labels, `best_per_class` runs the one-vs-rest measurement per class.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Selectivity:
  """Per-neuron best single-threshold classifiers over ``M`` neurons.

  ``accuracy``, ``threshold`` (float64) and ``polarity`` (+1: high => positive, -1: low =>
  positive) are ``(M,)``; ``best_neuron`` is the first neuron reaching ``best_accuracy``;
  ``chance`` is `chance_rate` of the labels (always predicting the majority class).
  """

  accuracy: np.ndarray
  threshold: np.ndarray
  polarity: np.ndarray
  best_neuron: int
  best_accuracy: float
  chance: float

  def ranking(self) -> np.ndarray:
    """Neuron ids from most to least selective (stable: ties keep the lower id first)."""
    return np.argsort(-self.accuracy, kind="stable")


def chance_rate(labels) -> float:
  """Accuracy of always predicting the majority class: ``max(p, 1 - p)``."""
  y = _binary(labels)
  p = float(np.mean(y))
  return max(p, 1.0 - p)


def predict(activations, threshold, polarity) -> np.ndarray:
  """Boolean predictions ``(N, M)`` of per-neuron rules (see the module docstring)."""
  a = np.asarray(activations, np.float64)
  t = np.asarray(threshold, np.float64)
  above = a > t
  return np.where(np.asarray(polarity) > 0, above, ~above)


def best_threshold(activations, labels, chunk_size: int | None = None) -> Selectivity:
  """Best single-threshold accuracy of every neuron, over all thresholds and both polarities.

  ``activations``: ``(N, M)`` (N examples, M neurons; any trailing axes are flattened into
  neurons). ``labels``: ``(N,)`` binary (bool or 0/1). Exact; ``O(N log N * M)`` time. Neurons
  are processed ``chunk_size`` at a time (default: about 2**22 values per chunk) to bound memory.
  """
  a = np.asarray(activations)
  if a.ndim < 2:
    raise ValueError(f"activations must be (N, M) (examples, neurons), got shape {a.shape}")
  a = a.reshape(a.shape[0], -1)
  y = _binary(labels)
  n, m = a.shape
  if y.shape != (n,):
    raise ValueError(f"labels must have shape ({n},) to match activations {a.shape}, got {y.shape}")
  if n == 0 or m == 0:
    raise ValueError(f"need at least one example and one neuron, got activations {a.shape}")
  if not np.all(np.isfinite(a)):
    raise ValueError("activations contain NaN or infinite values")
  chunk = chunk_size or max(1, (1 << 22) // n)
  acc = np.empty(m, np.float64)
  thr = np.empty(m, np.float64)
  pol = np.empty(m, np.int8)
  for lo in range(0, m, chunk):
    sl = slice(lo, min(m, lo + chunk))
    acc[sl], thr[sl], pol[sl] = _best_chunk(a[:, sl], y)
  best = int(np.argmax(acc))
  return Selectivity(acc, thr, pol, best, float(acc[best]), chance_rate(y))


def _best_chunk(a: np.ndarray, y: np.ndarray):
  n, m = a.shape
  order = np.argsort(a, axis=0, kind="stable")
  s = np.take_along_axis(a, order, axis=0).astype(np.float64)  # (N, m) ascending
  ys = y[order].astype(np.int64)
  pos = int(y.sum())
  # c[i] = positives among the first i sorted examples, i = 0..N.
  c = np.concatenate([np.zeros((1, m), np.int64), np.cumsum(ys, axis=0)], axis=0)
  i = np.arange(n + 1)[:, None]
  right_plus = (i - c) + (pos - c)  # correct with "high => positive" splitting before i
  correct = np.maximum(right_plus, n - right_plus)
  valid = np.ones((n + 1, m), bool)
  valid[1:n] = s[:-1] < s[1:]  # never split between equal activations
  correct = np.where(valid, correct, -1)
  k = np.argmax(correct, axis=0)  # (m,) best split index per neuron
  cols = np.arange(m)
  best = correct[k, cols]
  polarity = np.where(right_plus[k, cols] >= n - right_plus[k, cols], 1, -1).astype(np.int8)
  lo = s[np.maximum(k - 1, 0), cols]
  hi = s[np.minimum(k, n - 1), cols]
  mid = lo + (hi - lo) / 2.0
  mid = np.where(mid < hi, mid, lo)  # float64 rounding guard: still strictly below hi
  below_all = np.nextafter(s[0], -np.inf)
  thr = np.where(k == 0, below_all, np.where(k == n, s[-1], mid))
  return best / n, thr, polarity


def best_per_class(activations, labels, num_classes: int | None = None) -> dict:
  """One-vs-rest `best_threshold` for every class of integer ``labels``.

  Returns arrays over classes: ``neuron`` (best neuron id), ``accuracy``, ``threshold``,
  ``polarity``, ``chance`` (the one-vs-rest chance rate, e.g. 0.9 for 10 balanced classes).
  """
  y = np.asarray(labels).astype(np.int64).reshape(-1)
  c = int(num_classes if num_classes is not None else y.max() + 1)
  out = {k: [] for k in ("neuron", "accuracy", "threshold", "polarity", "chance")}
  for cls in range(c):
    r = best_threshold(activations, y == cls)
    out["neuron"].append(r.best_neuron)
    out["accuracy"].append(r.best_accuracy)
    out["threshold"].append(r.threshold[r.best_neuron])
    out["polarity"].append(int(r.polarity[r.best_neuron]))
    out["chance"].append(r.chance)
  return {k: np.asarray(v) for k, v in out.items()}


def _binary(labels) -> np.ndarray:
  y = np.asarray(labels).reshape(-1)
  if y.dtype != bool:
    vals = np.unique(y)
    if not np.all(np.isin(vals, (0, 1))):
      raise ValueError(f"labels must be binary (bool or 0/1), got values {vals[:10].tolist()}")
    y = y.astype(bool)
  return y
