"""experiments/transfer.py: a planted separable problem is solved, baselines and label-count
capping are reported, the command line prints the table."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from test_analyze import ROOT, planted_run, write_bars

from experiments import transfer
from experiments.configs import transfer as transfer_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return planted_run(tmp_path_factory.mktemp("planted"))


def test_planted_separable_problem(run, tmp_path):
  # Vertical vs horizontal centre bars: the planted layer's neuron 0 is exactly their sign.
  data = write_bars(tmp_path / "bars", {"horz": ["h"] * 40, "vert": ["v"] * 40})
  cfg = transfer_config.get_config("fast")
  cfg.dataset = f"folder:{data}"
  cfg.label_counts = "10,1000"
  out = transfer.transfer(run, cfg, log=lambda *_: None)
  assert set(out) == {"raw_pixels", "random_network", "layer1"}
  for row in out.values():
    assert set(row) == {"10", "1000"}
    assert row["10"]["n_train"] == 10 and row["1000"]["n_train"] == 64  # 80% of 80, capped
    assert row["1000"]["n_test"] == 16
  assert out["layer1"]["10"]["error"] == 0.0 and out["layer1"]["1000"]["error"] == 0.0
  assert out["raw_pixels"]["1000"]["error"] <= 1 / 16
  assert out["raw_pixels"]["1000"]["dim"] == 8 * 8 and out["layer1"]["1000"]["dim"] == 2
  with open(os.path.join(run, "transfer.json")) as f:
    assert json.load(f) == out
  md = open(os.path.join(run, "transfer.md")).read()
  assert "| layer1 | 0.00% | 0.00% (n=64) |" in md and "raw_pixels" in md


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


def test_cli_mnist_default_states_counts(run):
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  r = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.transfer",
      f"--workdir={run}",
      "--config=experiments/configs/transfer.py:fast",
      "--config.random_layer=each",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=240,
    env=env,
  )
  assert r.returncode == 0, r.stdout + r.stderr
  assert "| features | 1000 labels | 10000 labels |" in r.stdout
  assert "10000 requested -> 2000 used (of 2000 available)" in r.stdout  # fast: 2,000 loaded
  with open(os.path.join(run, "transfer.json")) as f:
    out = json.load(f)
  assert (
    out["raw_pixels"]["10000"]["n_train"] == 2000 and out["raw_pixels"]["1000"]["n_test"] == 500
  )
  assert out["raw_pixels"]["1000"]["dim"] == 28 * 28  # native MNIST pixels
  assert all(0.0 <= out[s][n]["error"] < 0.9 for s in ("raw_pixels", "layer1") for n in out[s])


def test_labeled_sets_from_tfds_and_bad_sources(tmp_path):
  tf = pytest.importorskip("tensorflow")
  tfds = pytest.importorskip("tensorflow_datasets")
  from livermore_brain.data import labeled

  rng = np.random.default_rng(0)
  split = lambda n: tf.data.Dataset.from_tensor_slices(
    {"image": rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), "label": np.arange(n) % 2}
  )
  features = tfds.features.FeaturesDict(
    {
      "image": tfds.features.Image(shape=(8, 8, 3)),
      "label": tfds.features.ClassLabel(num_classes=2),
    }
  )
  tfds.dataset_builders.TfDataBuilder(
    name="two_splits",
    version="1.0.0",
    data_dir=str(tmp_path),
    features=features,
    split_datasets={"train": split(20), "test": split(6)},
  ).download_and_prepare()
  tr, te, desc = labeled.labeled_sets("tfds:two_splits", (4, 4, 1), data_dir=str(tmp_path))
  assert tr.images.shape == (20, 8, 8, 3) and te.images.shape == (6, 8, 8, 3)
  assert "20 train / 6 test" in desc
  assert labeled.at_input(te, (4, 4, 1)).images.shape == (6, 4, 4, 1)
  tr, te, _ = labeled.labeled_sets("tfds:two_splits:train", (4, 4, 1), data_dir=str(tmp_path))
  assert (len(tr.labels), len(te.labels)) == (16, 4)
  with pytest.raises(ValueError, match="is not understood"):
    labeled.labeled_sets("mnsit", (4, 4, 1))
