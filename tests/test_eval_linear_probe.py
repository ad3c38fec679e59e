"""Linear probe: planted separable problems, a no-signal baseline, the transfer table."""

import numpy as np
import pytest

from livermore_brain.eval import linear_probe as lp


def _planted(n, d=20, c=4, seed=0, margin=1.0):
  rng = np.random.default_rng(seed)
  y = np.arange(n) % c
  centers = rng.normal(size=(c, d)) * 4.0 * margin
  x = centers[y] + rng.normal(size=(n, d))
  return x.astype(np.float32), y


def test_separable_problem_is_solved_and_noise_is_not():
  x, y = _planted(600)
  probe = lp.fit(x[:400], y[:400], 4, l2=1e-4)
  assert lp.error_rate(probe, x[400:], y[400:]) <= 0.005
  assert probe.w.shape == (20, 4) and probe.num_classes == 4
  rng = np.random.default_rng(1)
  noise = rng.normal(size=x.shape).astype(np.float32)
  base = lp.fit(noise[:400], y[:400], 4, l2=1e-4)
  assert lp.error_rate(base, noise[400:], y[400:]) > 0.5  # chance is 0.75
  # Deterministic: the same data gives the same probe.
  again = lp.fit(x[:400], y[:400], 4, l2=1e-4)
  np.testing.assert_array_equal(again.w, probe.w)


def test_matches_sklearn_objective():
  from sklearn.linear_model import LogisticRegression

  x, y = _planted(400, margin=0.15, seed=3)  # shapes shared with other tests: fewer compiles
  l2 = 1e-2
  probe = lp.fit(x, y, 4, l2=l2, tol=1e-6)
  xs = (x - probe.mean) / probe.scale
  sk = LogisticRegression(C=1 / (l2 * len(y)), tol=1e-10, max_iter=5000).fit(xs, y)
  np.testing.assert_allclose(probe.w, sk.coef_.T, atol=2e-3)


def test_l2_grid_and_adam():
  x, y = _planted(500, margin=0.2, seed=2)
  probe = lp.fit(x, y, 4, l2=(1e-3, 1e-1, 100.0))
  assert set(probe.validation) == {1e-3, 1e-1, 100.0}
  best = min(probe.validation.values())
  assert probe.l2 == max(v for v, e in probe.validation.items() if e == best)  # ties: larger l2
  adam = lp.fit(x, y, 4, optimizer="adam", max_iter=200, learning_rate=0.05)
  assert lp.error_rate(adam, x, y) < 0.2
  with pytest.raises(ValueError, match="optimizer"):
    lp.fit(x, y, optimizer="sgd")


def test_label_subset_balanced_and_nested():
  y = np.repeat(np.arange(5), [100, 100, 100, 100, 3])
  idx = lp.label_subset(y, 50, seed=4)
  counts = np.bincount(y[idx], minlength=5)
  assert counts[4] == 3 and counts.sum() == 50  # the short class gives all it has
  assert counts[:4].max() - counts[:4].min() <= 1  # the rest as even as possible
  assert np.bincount(y[lp.label_subset(y, 10, seed=4)], minlength=5).tolist() == [2] * 5
  big = lp.label_subset(y, 200, seed=4)
  np.testing.assert_array_equal(big[:50], idx)
  assert len(set(big.tolist())) == 200


def test_transfer_table_structure_and_capping():
  x, y = _planted(500)
  xte, yte = _planted(200, seed=0)
  rng = np.random.default_rng(0)
  sources = {
    "planted": (x, xte),
    "noise": (rng.normal(size=(500, 20)), rng.normal(size=(200, 20))),
  }
  table = lp.transfer_table(sources, y, yte, label_counts=(40, 1000))
  assert list(table) == ["planted", "noise"]
  for row in table.values():
    assert list(row) == ["40", "1000"]
    assert row["40"]["n_train"] == 40
    assert row["1000"]["n_train"] == 500  # capped at what is available
    for e in row.values():
      assert 0.0 <= e["error"] <= 1.0 and e["n_test"] == 200
  assert table["planted"]["1000"]["error"] < 0.05
  assert table["noise"]["1000"]["error"] > 0.5
  md = lp.to_markdown(table)
  assert "| planted |" in md and "(n=500)" in md and "1000 labels" in md
  assert " ± " not in md  # one seed: no sd
  with pytest.raises(ValueError, match="labels for"):
    lp.transfer_table({"bad": (x[:10], xte)}, y, yte)


def test_transfer_table_over_seeds():
  x, y = _planted(500, margin=0.1, seed=5)
  xte, yte = _planted(200, margin=0.1, seed=5)  # the same centres, other noise
  xte = xte + np.random.default_rng(9).normal(size=xte.shape).astype(np.float32)
  table = lp.transfer_table({"weak": (x, xte)}, y, yte, (40, 1000), seeds=(3, 4, 5), l2=1e-2)
  small, capped = table["weak"]["40"], table["weak"]["1000"]
  assert small["seeds"] == [3, 4, 5] and len(small["errors"]) == 3 and len(small["l2"]) == 3
  assert small["error"] == pytest.approx(np.mean(small["errors"]))
  assert small["sd"] == pytest.approx(np.std(small["errors"], ddof=1)) and small["sd"] > 0
  # Each seed its own subset of 40; the one for seed 3 is what a single-seed table uses.
  single = lp.transfer_table({"weak": (x, xte)}, y, yte, (40,), seed=3, l2=1e-2)["weak"]["40"]
  assert single["errors"] == small["errors"][:1] and single["sd"] is None
  # All 500 labels for every seed: the same probe up to float rounding.
  assert capped["n_train"] == 500 and capped["sd"] < 1e-6
  assert lp.format_cell(small, "40").count(" ± ") == 1
  assert lp.format_cell(capped, "1000").endswith("(n=500)")
  assert lp.summarize([0.1]) == (0.1, None)
