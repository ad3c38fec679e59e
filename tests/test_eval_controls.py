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
