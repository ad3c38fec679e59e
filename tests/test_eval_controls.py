"""Le et al.'s face-neuron controls on planted probes where the answer is known."""

from __future__ import annotations

import numpy as np

from livermore_brain.eval import controls


def test_halves_are_disjoint_stratified_and_cover_everything():
  y = np.array([1] * 7 + [0] * 13, bool)
  a, b = controls.halves(y, seed=3)
  assert set(a).isdisjoint(b) and set(a) | set(b) == set(range(20))
  assert abs(int(y[a].sum()) - int(y[b].sum())) <= 1


def test_best_pixel_finds_the_planted_pixel_and_holds_out():
  """Pixel 37 carries the label (with 5% label noise); every other pixel is noise."""
  rng = np.random.default_rng(0)
  n, d = 400, 100
  x = rng.standard_normal((n, d))
  y = rng.random(n) < 0.5
  x[:, 37] = np.where(y, 1.0, -1.0) + 0.3 * rng.standard_normal(n)
  flip = rng.random(n) < 0.05
  y = y ^ flip
  r = controls.neuron_control(x, y, seed=0)
  assert r["neuron"] == 37 and all(f["neuron"] == 37 for f in r["folds"])
  assert 0.9 < r["held_out"] <= r["same_set"] + 0.05
  # On pure noise the same-set best of 100 pixels is well above chance; held out it is not.
  noise = controls.neuron_control(rng.standard_normal((n, d)), y, seed=0)
  assert (
    noise["same_set"] > max(y.mean(), 1 - y.mean()) + 0.03 and abs(noise["held_out"] - 0.5) < 0.08
  )


def test_linear_filter_beats_best_pixel_on_a_planted_direction():
  """The label is the sign of a dense direction: no pixel alone separates it, a filter does."""
  rng = np.random.default_rng(1)
  n, d = 600, 20
  x = rng.standard_normal((n, d))
  w = rng.standard_normal(d)
  y = x @ w > 0
  lin = controls.linear_filter_control(x, y, seed=0)
  pix = controls.neuron_control(x, y, seed=0)
  assert lin["held_out"] > 0.9 and lin["same_set"] > 0.95
  assert pix["held_out"] < lin["held_out"] - 0.15
  table = controls.control_table({"pixel": x}, y, linear_inputs=x)
  assert set(table) == {"pixel", "best linear filter (pixels)", "chance"}
  assert table["chance"]["held_out"] == max(y.mean(), 1 - y.mean())
  assert "| pixel |" in controls.format_table(table)


def test_kurtosis_separates_sparse_filters_from_random_ones():
  """Patches are sums of sparse (Laplacian) sources along orthonormal directions: a filter on a
  source direction has the Laplacian's excess kurtosis 3; random unit-norm filters mix many
  sources and are near-Gaussian (close to 0)."""
  from livermore_brain.eval import filter_stats

  rng = np.random.default_rng(0)
  d, n = 32, 20000
  basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
  patches = (rng.laplace(size=(n, d)) @ basis.T)[None]  # (1, n, d)
  learned = basis.T[None, :8]  # (1, 8, d): the true source directions
  k = filter_stats.response_kurtosis(learned, patches)
  assert k.shape == (1, 8) and np.all(np.abs(k - 3.0) < 0.5)
  rnd = filter_stats.response_kurtosis(filter_stats.random_unit_filters((1, 8, d), seed=1), patches)
  assert np.all(np.abs(rnd) < 1.0)  # 3 * sum(w^4) ~ 9 / d for a mixture of d sources
  s = filter_stats.summary(k, rnd)
  assert s["trained_above_random_p95"] == 1.0 and s["filters"] == 8
  gauss = filter_stats.excess_kurtosis(rng.standard_normal(200000))
  assert abs(gauss) < 0.05
