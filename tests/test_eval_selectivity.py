"""Best single-threshold selectivity against a planted neuron and a brute-force search."""

import numpy as np
import pytest

from livermore_brain.eval import selectivity as sel


def _brute(a, y):
  """Best accuracy over every threshold (between distinct values and both ends), both polarities."""
  n = len(y)
  vals = np.unique(a)
  cands = np.concatenate([[vals[0] - 1.0], (vals[:-1] + vals[1:]) / 2, [vals[-1]]])
  best = 0.0
  for t in cands:
    pred = a > t
    acc = np.mean(pred == y)
    best = max(best, acc, 1.0 - acc)
  assert best * n == pytest.approx(round(best * n))
  return best


def test_planted_neuron_found_with_exact_accuracy():
  rng = np.random.default_rng(0)
  n, m = 400, 30
  labels = rng.integers(0, 10, n)
  y = labels == 3
  acts = rng.normal(size=(n, m))
  planted = 0.1 * rng.normal(size=n) + np.where(y, 5.0, 0.0)  # fires on class 3
  wrong = rng.choice(n, 7, replace=False)  # exactly 7 errors: flip these examples
  planted[wrong] = np.where(y[wrong], -1.0, 6.0)
  acts[:, 17] = planted
  r = sel.best_threshold(acts, y)
  assert r.best_neuron == 17
  assert r.best_accuracy == pytest.approx(1 - 7 / n)
  assert r.polarity[17] == 1
  pred = sel.predict(acts, r.threshold, r.polarity)
  np.testing.assert_allclose(np.mean(pred == y[:, None], axis=0), r.accuracy)
  assert r.chance == pytest.approx(max(y.mean(), 1 - y.mean()))
  assert r.ranking()[0] == 17
  # The inverted neuron is found with polarity -1 and the same accuracy.
  r2 = sel.best_threshold(-acts, y)
  assert r2.best_neuron == 17 and r2.polarity[17] == -1
  assert r2.best_accuracy == pytest.approx(r.best_accuracy)


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force_with_ties(seed):
  rng = np.random.default_rng(seed)
  n, m = 37, 9
  acts = rng.integers(0, 5, size=(n, m)).astype(np.float32)  # many ties
  acts[:, 0] = 2.0  # a constant neuron: only chance is reachable
  y = rng.random(n) < 0.4
  r = sel.best_threshold(acts, y, chunk_size=4)
  expect = np.array([_brute(acts[:, j].astype(np.float64), y) for j in range(m)])
  np.testing.assert_allclose(r.accuracy, expect)
  assert r.accuracy[0] == pytest.approx(sel.chance_rate(y))
  # The returned rule reproduces the reported accuracy exactly: no threshold splits a tie.
  pred = sel.predict(acts, r.threshold, r.polarity)
  np.testing.assert_allclose(np.mean(pred == y[:, None], axis=0), r.accuracy)


def test_ties_are_not_split():
  # Equal activations with different labels: a threshold cannot separate them.
  acts = np.array([[1.0], [1.0], [1.0], [1.0], [2.0]])
  y = np.array([1, 0, 1, 0, 1])
  r = sel.best_threshold(acts, y)
  assert r.accuracy[0] == pytest.approx(3 / 5)  # 2 of the tied four must be wrong


def test_best_per_class_and_errors():
  rng = np.random.default_rng(1)
  labels = np.repeat(np.arange(3), 20)
  acts = rng.normal(size=(60, 5))
  acts[:, 4] = (labels == 2) * 3.0
  out = sel.best_per_class(acts, labels)
  assert out["neuron"][2] == 4 and out["accuracy"][2] == 1.0
  np.testing.assert_allclose(out["chance"], 2 / 3)
  with pytest.raises(ValueError, match="binary"):
    sel.best_threshold(acts, labels)
  with pytest.raises(ValueError, match="shape"):
    sel.best_threshold(acts, labels[:10] == 1)
  with pytest.raises(ValueError, match="NaN"):
    sel.best_threshold(np.full((3, 2), np.nan), [0, 1, 0])
