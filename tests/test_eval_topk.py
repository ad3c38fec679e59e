"""Streamed top-k stimuli and moments against whole-array references."""

import numpy as np
import pytest
import scipy.stats

from livermore_brain.eval import topk


def _brute(a, k):
  order = np.argsort(-a, axis=0, kind="stable")[:k].T  # (M, k), ties: lower index first
  return np.take_along_axis(a.T, order, axis=1), order


@pytest.mark.parametrize("batch", [1, 7, 50, 200])
def test_topk_streamed_matches_sort(batch):
  rng = np.random.default_rng(batch)
  a = rng.normal(size=(173, 11)).astype(np.float32)
  a[::3, 2] = 0.5  # ties
  k = 5
  vals, idx = topk.top_k((a[i : i + batch] for i in range(0, len(a), batch)), k)
  bv, bi = _brute(a, k)
  np.testing.assert_array_equal(vals, bv)
  np.testing.assert_array_equal(idx, bi)
  assert vals.shape == (11, k)


def test_topk_fewer_examples_than_k_and_offsets():
  a = np.arange(6, dtype=np.float32).reshape(3, 2)
  t = topk.TopK(10).update(a[:2]).update(a[2:])
  v, i = t.result()
  assert v.shape == (2, 3)
  np.testing.assert_array_equal(i[0], [2, 1, 0])
  t = topk.TopK(1).update(a[2:], offset=100)
  assert t.result()[1][0, 0] == 100
  with pytest.raises(ValueError, match="neurons"):
    topk.TopK(2).update(a).update(np.zeros((2, 3)))
  with pytest.raises(ValueError, match="positive"):
    topk.TopK(0)


def test_moments_and_scores():
  rng = np.random.default_rng(0)
  n, m = 500, 6
  a = rng.normal(size=(n, m))
  a[:, 3] = rng.exponential(size=n) ** 3  # heavy high tail
  a[:, 5] = 1.0  # constant
  stats = topk.neuron_stats([a[:123], a[123:124], a[124:]], k=10)
  np.testing.assert_allclose(stats.moments.mean, a.mean(0))
  np.testing.assert_allclose(stats.moments.var, a.var(0), atol=1e-12)
  kurt = stats.scores("kurtosis")
  np.testing.assert_allclose(kurt[:5], scipy.stats.kurtosis(a[:, :5], axis=0), rtol=1e-9)
  assert kurt[5] == -3.0
  z = stats.scores("topk_z")
  vals = np.sort(a, axis=0)[-10:].mean(0)
  np.testing.assert_allclose(z[:5], (vals[:5] - a.mean(0)[:5]) / a.std(0)[:5], rtol=1e-9)
  assert z[5] == 0.0
  assert stats.most_selective(1, "kurtosis")[0] == 3
  assert stats.most_selective(method="topk_z")[-1] == 5
  with pytest.raises(ValueError, match="choose one of"):
    stats.scores("bogus")
