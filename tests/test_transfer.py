"""experiments/transfer.py: one Fig. 4 table over several run directories (mean ± sd over nested
label subsets, random-init twins per architecture, raw pixels, the report's rows, fine-tuned
rows), fine-tuning on a planted problem, clear errors, the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_analyze import ROOT, planted_run

from experiments import transfer
from experiments.configs import rica_yfcc
from experiments.configs import transfer as transfer_config
from livermore_brain import families
from livermore_brain.eval import finetune
from livermore_brain.eval import linear_probe as lp

ONE = jax.devices()[:1]  # the networks on one device: fewer, smaller compilations


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
  """A RICA run (8x8x1, one dense layer of 2 neurons), written directly: no training."""
  return planted_run(tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def rica_tiny(tmp_path_factory):
  """A RICA tiny run (16x16x3, three layers) trained for two steps."""
  c = rica_yfcc.get_config("tiny")
  c.tensorboard = False
  c.num_steps, c.checkpoint_every, c.log_every = 2, 2, 1
  wd = str(tmp_path_factory.mktemp("rica_tiny"))
  families.train(c, wd, devices=jax.devices()[:1])
  return wd


def small_config(out_dir, **overrides):
  """The fast preset on 300 / 100 MNIST digits: seconds per row."""
  cfg = transfer_config.get_config("fast")
  cfg.train_limit, cfg.test_limit = 300, 100
  cfg.label_counts = "30,1000"  # 1000 is capped at the 300 loaded; the report has a 1k column
  cfg.max_iter = 50
  cfg.batch_size = 100  # one feature batch shape for the 300 train and 100 test images
  cfg.finetune.max_steps = 6
  cfg.out_dir = str(out_dir)
  for k, v in overrides.items():
    cfg[k] = v
  return cfg


def test_one_table_over_two_runs(planted, rica_tiny, tmp_path):
  cfg = small_config(tmp_path / "table", layers="layer1", mode="both", random_twins=2)
  out = transfer.transfer([rica_tiny, planted], cfg, log=lambda *_: None, devices=ONE)
  names = [r["system"] for r in out["runs"]]
  assert names == [f"{os.path.basename(rica_tiny)} (rica)", f"{os.path.basename(planted)} (rica)"]
  tags = ["trained", "random init", "fine-tuned", "random init, fine-tuned"]
  expected = ["raw pixels"] + [f"{n}: layer1 ({t})" for n in names for t in tags]
  expected += list(transfer.REFERENCE)
  assert list(out["rows"]) == expected
  assert out["label_counts"] == {"30": 30, "1000": 300} and out["probe_seeds"] == [0, 1, 2]
  # The random-init twin of each architecture: same layer, other weights, own rows.
  assert all(r["random_network"].startswith("random (seed") for r in out["runs"])
  # Two twins per run (probe rows), the second seeded 1000 above the first; per label subset
  # the row holds their mean.
  for r in out["runs"]:
    first = int(r["random_network"].split()[-1][:-1])
    assert r["random_twins"] == [r["random_network"], f"random (seed {first + 1000})"]
  twin = out["rows"][f"{names[0]}: layer1 (random init)"]["cells"]["30"]
  per_twin = np.asarray(twin["twin_errors"])
  assert per_twin.shape == (2, 3) and not np.array_equal(per_twin[0], per_twin[1])
  np.testing.assert_allclose(twin["errors"], per_twin.mean(axis=0))
  assert out["rows"][f"{names[1]}: layer1 (trained)"]["dim"] == 2  # abs readout
  assert out["rows"][f"{names[0]}: layer1 (random init)"]["dim"] == 6 * 6 * 8
  for label, row in out["rows"].items():
    if row["kind"] == "reference":
      continue
    for col, c in row["cells"].items():
      assert c["seeds"] == [0, 1, 2] and len(c["errors"]) == 3
      assert c["error"] == pytest.approx(np.mean(c["errors"]))
      assert c["sd"] == pytest.approx(np.std(c["errors"], ddof=1))
      assert c["n_train"] == {"30": 30, "1000": 300}[col] and c["n_test"] == 100
    if row["method"] == "probe":  # 30 labels: three different subsets, three different errors
      assert row["cells"]["30"]["sd"] > 0, label
  # The planted layer separates bars, not digits; the 16x16x3 tiny run's layer 1 is far better.
  assert out["rows"][f"{names[0]}: layer1 (trained)"]["cells"]["1000"]["error"] < 0.6
  ref = out["rows"]["report: autoencoder (CIFAR-10 → MNIST)"]["cells"]
  assert set(ref) == {"1000"} and ref["1000"]["error"] == 0.0723
  assert {(d["a"].rsplit(" (", 1)[1], d["b"].rsplit(" (", 1)[1]) for d in out["differences"]} == {
    ("trained)", "random init)"),
    ("fine-tuned)", "trained)"),
    ("fine-tuned)", "random init, fine-tuned)"),
  }
  with open(tmp_path / "table" / "transfer.json") as f:
    assert json.load(f) == out
  md = (tmp_path / "table" / "transfer.md").read_text()
  assert "| features | 30 labels | 1000 labels |" in md
  row = next(line for line in md.splitlines() if line.startswith("| raw pixels |"))
  assert row.count(" ± ") == 2 and "(n=300)" in row
  assert "| report: GAN w/ curriculum (CIFAR-10 → MNIST) | — | 5.43% |" in md
  assert "paired seeds" in md
  # Two different configurations: no group of training seeds, no such section.
  assert [r["seed_group"] for r in out["runs"]] == [None, None] and out["over_seeds"] == {}
  assert "Over training seeds" not in md


def test_label_subsets_differ_by_seed_and_nest_in_n():
  y = np.repeat(np.arange(4), 50)
  small = [lp.label_subset(y, 20, seed=s) for s in range(3)]
  big = [lp.label_subset(y, 60, seed=s) for s in range(3)]
  assert len({tuple(sorted(a.tolist())) for a in small}) == 3  # each seed its own subset
  for a, b in zip(small, big):
    np.testing.assert_array_equal(b[:20], a)  # nested: the 20 are the first of the 60
    assert np.bincount(y[a], minlength=4).tolist() == [5] * 4


def _separable(n, seed):
  """4x4 images of noise; the class (0/1) shifts pixel (0, 0) by ±3."""
  rng = np.random.default_rng(seed)
  y = (np.arange(n) % 2).astype(np.int32)
  x = rng.normal(size=(n, 4, 4, 1)).astype(np.float32)
  x[:, 0, 0, 0] += 3.0 * (2 * y - 1)
  return x, y


def test_finetune_learns_what_the_frozen_features_miss():
  # Two tanh features blind to the informative pixel: frozen, a probe is at chance; fine-tuned
  # through the feature function, the network finds the pixel.
  w = np.random.default_rng(1).normal(size=(16, 2)).astype(np.float32)
  w[0] = 0.0
  params = {"w": jnp.asarray(w)}
  fn = lambda p, images: jnp.tanh(images.reshape(images.shape[0], -1) @ p["w"])
  xtr, ytr = _separable(200, 0)
  xte, yte = _separable(200, 1)
  frozen = lp.fit(np.asarray(fn(params, xtr)), ytr, 2, l2=1e-2)
  frozen_err = lp.error_rate(frozen, np.asarray(fn(params, xte)), yte)
  kw = dict(epochs=20, batch_size=32, learning_rate=0.05, backbone_lr_scale=1.0, seed=3)
  res = finetune.finetune(fn, params, xtr, ytr, xte, yte, 2, **kw)
  assert frozen_err > 0.3 and res.error < 0.05 and res.error < frozen_err
  assert res.steps == 125 and res.batch_size == 32  # ceil(20 epochs * 200 / 32)
  again = finetune.finetune(fn, params, xtr, ytr, xte, yte, 2, **kw)  # deterministic in seed
  np.testing.assert_array_equal(again.params["w"], res.params["w"])
  still = finetune.finetune(fn, params, xtr, ytr, xte, yte, 2, **{**kw, "backbone_lr_scale": 0.0})
  np.testing.assert_array_equal(still.params["w"], w)  # scale 0: the backbone stays frozen


def test_layers_defaults_and_errors(planted, tmp_path):
  class Conv:  # the supervised extractor's interface, enough for the layer choice
    family, arch = "supervised", "resception"
    layers = ("stem", "block1", "block2", "block3", "pool", "logits")

  assert transfer.default_layers(Conv()) == ["block2", "block3", "pool"]
  specs = transfer.parse_layers("block3,rica:layer1, supervised:pool")
  assert specs == [(None, "block3"), ("rica", "layer1"), ("supervised", "pool")]
  assert transfer.layers_for(Conv(), specs, "x", True) == ["block3", "pool"]
  assert transfer.layers_for(Conv(), [("rica", "layer1")], "x", True) == transfer.default_layers(
    Conv()
  )
  with pytest.raises(ValueError, match="unknown layer 'layer2' for x .*exports stem, block1"):
    transfer.layers_for(Conv(), [(None, "layer2")], "x", True)
  with pytest.raises(ValueError, match="unknown family 'convnet'"):
    transfer.parse_layers("convnet:pool")
  cfg = small_config(tmp_path)
  with pytest.raises(FileNotFoundError, match="is not a run directory"):
    transfer.transfer([planted, str(tmp_path)], cfg)
  with pytest.raises(ValueError, match="unknown layer 'pool' for .*planted.* exports layer1$"):
    transfer.transfer(planted, small_config(tmp_path, layers="pool"), log=print, devices=ONE)
  with pytest.raises(ValueError, match="mode must be one of probe, finetune, both"):
    transfer.transfer(planted, small_config(tmp_path, mode="tune"))
  with pytest.raises(ValueError, match="probe_seeds must be >= 1"):
    transfer.transfer(planted, small_config(tmp_path, probe_seeds=0))
  assert not os.path.exists(tmp_path / "transfer.json")


def test_parsers_and_auto_pooling():
  assert transfer.parse_counts("1000, 10000,all", 4000) == [1000, 10000, 4000]
  with pytest.raises(ValueError, match="label_counts"):
    transfer.parse_counts("1k", 10)
  assert transfer.parse_l2("1e-3") == 1e-3 and transfer.parse_l2("1,2") == (1.0, 2.0)
  assert transfer.resolve_pool((14, 14, 48), -1, 8192) == 7  # 9,408 values -> 7x7x48
  assert transfer.resolve_pool((65, 65, 384), -1, 8192) == 3
  assert transfer.resolve_pool((6, 6, 48), -1, 8192) is None
  assert (
    transfer.resolve_pool((6, 6, 48), 0, 10) is None and transfer.resolve_pool((6, 6, 4), 2, 0) == 2
  )
  a, b = "/x/a/run", "/x/b/run"
  fx = type("Fx", (), {"family": "rica"})()
  assert transfer.system_names([fx, fx], [a, b]) == ["a/run (rica)", "b/run (rica)"]
  assert transfer.parse_workdirs(["/x/a", "/x/a/", "/x/b"]) == ["/x/a", "/x/b"]


def test_cli_takes_several_run_directories(planted, tmp_path):
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  bad = str(tmp_path / "not_a_run")
  os.makedirs(bad)
  for args in ([f"--workdir={planted}", f"--workdir={bad}"], [f"--workdirs={planted},{bad}"]):
    r = subprocess.run(
      [sys.executable, "-m", "experiments.transfer", *args],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=120,
      env=env,
    )
    # Both directories were read: the second is named in a one-line error, before any compute.
    assert r.returncode == 2, r.stdout + r.stderr
    err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and f"{bad} is not a run directory" in err[0], r.stderr


def test_runs_differing_only_in_seed_are_averaged_over_seeds():
  from livermore_brain.eval import transfer_report as tr

  def run(system, seed, step=100):
    return dict(
      system=system, workdir=f"/r/{system}", train_seed=seed, step=step, input_shape=[8, 8, 1],
      pools={"conv8": 2}, random_network=f"random (seed {seed + 1})",
    )  # fmt: skip

  base = {"family": "gan", "curriculum": "none", "model": {"loss": "nonsaturating"}}
  runs = [run("none-s0 (gan)", 0), run("none-s1 (gan)", 1), run("prog-s0 (gan)", 0)]
  runs.append(run("none-s2 (gan)", 2, step=50))  # another checkpoint step: its own
  configs = [{**base, "seed": 0}, {**base, "seed": 1}, {**base, "curriculum": "progressive"}]
  configs.append({**base, "seed": 2})
  groups = tr.seed_groups(runs, configs)
  assert groups == ["none (gan; seeds 0, 1)"] * 2 + [None, None]
  nested = [{**base, "seed": 0}, {**base, "seed": 1, "model": {"loss": "hinge"}}]
  assert tr.seed_groups(runs[:2], nested) == [None, None]  # a nested field differs
  for r, g in zip(runs, groups):
    r["seed_group"] = g

  def row(system, kind, errors):
    return dict(
      kind=kind, method="probe", system=system, workdir=None, layer="conv8", dim=4,
      cells={"1000": lp.cell(errors, [0, 1, 2], n_train=1000, n_test=100)},
    )  # fmt: skip

  rows = {"raw pixels": {**row(None, "raw_pixels", [0.3] * 3), "layer": None}}
  per_run = {"none-s0": (0.09, 0.10, 0.11), "none-s1": (0.13, 0.14, 0.15), "prog-s0": (0.5,) * 3}
  for name, errs in per_run.items():
    s = f"{name} (gan)"
    rows[f"{s}: conv8 (trained)"] = row(s, "trained", errs)
    rows[f"{s}: conv8 (random init)"] = row(s, "random_init", [e + 0.1 for e in errs])
  over = tr.over_training_seeds(rows, runs)
  assert list(over) == [
    "none (gan; seeds 0, 1): conv8 (trained)",
    "none (gan; seeds 0, 1): conv8 (random init)",
  ]
  cell = over["none (gan; seeds 0, 1): conv8 (trained)"]["cells"]["1000"]
  assert cell["errors"] == pytest.approx([0.10, 0.14])  # each run's mean over label subsets
  assert cell["error"] == pytest.approx(0.12) and cell["sd"] == pytest.approx(0.04 / np.sqrt(2))
  assert over["none (gan; seeds 0, 1): conv8 (random init)"]["cells"]["1000"]["error"] == (
    pytest.approx(0.22)
  )
  out = dict(
    probe_seeds=[0, 1, 2], available_labels=4000, label_counts={"1000": 1000}, mode="probe",
    dataset="mnist", n_test=100, runs=runs, rows=rows, differences=[], over_seeds=over,
  )  # fmt: skip
  md = tr.to_markdown(out, transfer_config.get_config("fast"))
  assert "## Over training seeds" in md
  assert "| none (gan; seeds 0, 1): conv8 (trained) | 12.00 ± 2.83% |" in md


def test_several_random_twins_average_per_label_subset(planted, tmp_path):
  cells = [
    {"30": lp.cell([0.1, 0.2, 0.3], [0, 1, 2], n_train=30, n_test=100, l2=[1e-2] * 3)},
    {"30": lp.cell([0.3, 0.2, 0.5], [0, 1, 2], n_train=30, n_test=100, l2=[1e-1] * 3)},
  ]
  twin = transfer.mean_of_twins(cells)["30"]
  np.testing.assert_allclose(twin["errors"], [0.2, 0.2, 0.4])
  assert twin["error"] == pytest.approx(0.8 / 3) and twin["sd"] == pytest.approx(0.2 / np.sqrt(3))
  assert twin["twin_errors"] == [[0.1, 0.2, 0.3], [0.3, 0.2, 0.5]] and twin["seeds"] == [0, 1, 2]
  assert twin["n_train"] == 30 and twin["n_test"] == 100
  with pytest.raises(ValueError, match="random_twins must be >= 1"):
    transfer.transfer(planted, small_config(tmp_path, random_twins=0))


def test_trained_minus_twin_over_training_seeds():
  from livermore_brain.eval import transfer_report as tr

  trained, twins = [0.050, 0.052, 0.049, 0.051], [0.060, 0.055, 0.064, 0.058]
  systems = [f"r-s{i} (rica)" for i in range(4)]

  def entry(kind, errs):
    mean, sd = float(np.mean(errs)), float(np.std(errs, ddof=1))
    return dict(
      kind=kind, method="probe", group="r (rica; seeds 0, 1, 2, 3)", layer="layer1",
      systems=systems, cells={"1000": dict(error=mean, sd=sd, errors=errs, n_train=1000)},
    )  # fmt: skip

  over = {
    "r (rica; seeds 0, 1, 2, 3): layer1 (trained)": entry("trained", trained),
    "r (rica; seeds 0, 1, 2, 3): layer1 (random init)": entry("random_init", twins),
  }
  (d,) = tr.seed_differences(over)
  diff = np.subtract(trained, twins)
  assert d["per_run"] == pytest.approx(diff.tolist()) and d["runs"] == 4
  assert d["mean"] == pytest.approx(diff.mean()) and d["sd"] == pytest.approx(diff.std(ddof=1))
  assert d["ratio"] == pytest.approx(abs(diff.mean()) / diff.std(ddof=1))
  spread = np.hypot(np.std(trained, ddof=1), np.std(twins, ddof=1))
  assert d["unpaired"] == pytest.approx((np.mean(twins) - np.mean(trained)) / spread)
