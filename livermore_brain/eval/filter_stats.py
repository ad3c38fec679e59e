"""How sparse are a layer's filter responses? Kurtosis on held-out whitened patches.

ICA / RICA filters learned on whitened natural images respond rarely and strongly (edges, colour
blobs): their responses are heavy-tailed. A random unit-norm filter on whitened patches responds
like a Gaussian (excess kurtosis near 0 for a sum of many roughly independent values). So the
excess kurtosis ``E[(r - mean)^4] / var^2 - 3`` of every filter's responses ``r = w . x`` over
held-out patches, set against the same number for random unit-norm filters, measures whether a
layer learned structure — a number instead of a glance at the filter figure.
"""

from __future__ import annotations

import numpy as np


def excess_kurtosis(responses: np.ndarray, axis: int = 0) -> np.ndarray:
  """``E[(r - m)^4] / var^2 - 3`` along ``axis`` (float64); 0 for a Gaussian."""
  r = np.asarray(responses, np.float64)
  r = r - r.mean(axis=axis, keepdims=True)
  var = np.mean(r**2, axis=axis)
  return np.mean(r**4, axis=axis) / np.maximum(var, 1e-30) ** 2 - 3.0


def response_kurtosis(w: np.ndarray, patches: np.ndarray) -> np.ndarray:
  """Excess kurtosis ``(L, K)`` of filters ``w`` ``(L, K, D)`` over patches ``(L, B, D)``."""
  r = np.einsum("lbd,lkd->lbk", np.asarray(patches, np.float64), np.asarray(w, np.float64))
  return excess_kurtosis(r, axis=1)


def random_unit_filters(shape, seed: int = 0) -> np.ndarray:
  """Gaussian filters ``(L, K, D)`` scaled to unit norm (RICA's constraint)."""
  w = np.random.default_rng(seed).standard_normal(shape)
  return w / np.linalg.norm(w, axis=-1, keepdims=True)


def summary(trained: np.ndarray, random: np.ndarray) -> dict:
  """Medians and the share of trained filters above the random filters' 95th percentile."""
  t, r = np.ravel(trained), np.ravel(random)
  return {
    "trained_median": float(np.median(t)),
    "random_median": float(np.median(r)),
    "random_p95": float(np.percentile(r, 95)),
    "trained_above_random_p95": float(np.mean(t > np.percentile(r, 95))),
    "filters": int(t.size),
  }
