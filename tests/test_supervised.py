"""The supervised family end to end (tiny preset: 16x16 digits): a flax task through the generic
loop on a 2x4 mesh, held-out accuracy, bitwise resume, batch norm under data parallelism, and
features that do not depend on the mesh."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from experiments.configs import base, resception
from livermore_brain import distributed, families
from livermore_brain import sharding as shd
from livermore_brain.supervised.task import SupervisedTask
from livermore_brain.train import metrics, run_dir


def tiny(**overrides):
  return base.override(resception.get_config("tiny"), {"tensorboard": False, **overrides})


def state_np(workdir, config):
  task = SupervisedTask(config)
  mesh = shd.make_mesh("data:1,model:1", jax.devices()[:1])
  state, meta = run_dir.restore(workdir, task, mesh, shd.rules_from_config(config.rules))
  return int(meta["step"]), jax.tree.map(np.asarray, jax.device_get(state))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("rc_full"))
  summary = families.train(tiny(mesh="data:2,model:4"), wd)
  return wd, summary


def test_trains_on_a_2x4_mesh_with_held_out_accuracy(full_run):
  wd, summary = full_run
  assert summary["final_step"] == 40
  rows = metrics.read_metrics(wd)
  train = [r for r in rows if "train/loss" in r]
  evals = [r for r in rows if "eval/accuracy" in r]
  assert train[-1]["train/loss"] < 0.8 * train[0]["train/loss"]
  assert [r["step"] for r in evals] == [20, 40]  # eval_every=20 and at the end
  # 10 balanced classes: chance is ~10%; 40 steps of a tiny ResCeption do far better.
  assert evals[-1]["eval/accuracy"] > 0.45
  assert evals[-1]["eval/accuracy"] > evals[0]["eval/accuracy"]
  assert 0 < evals[-1]["eval/loss"] < train[0]["train/loss"]


def test_resume_is_bitwise(tmp_path):
  # A constant learning rate: the cosine schedule depends on num_steps, which this test changes
  # to stop the first run half way (a pre-empted run resumes with the same num_steps).
  def cfg(n):
    c = tiny(mesh="data:2,model:4", num_steps=n, **{"optimizer.schedule": "constant"})
    c.eval.source = ""  # evaluation reads the state only; not needed here
    return c

  full, part = str(tmp_path / "full"), str(tmp_path / "part")
  families.train(cfg(4), full)
  families.train(cfg(2), part)  # checkpoint at 2
  families.train(cfg(4), part)  # resumes to 4
  step_a, a = state_np(full, cfg(4))
  step_b, b = state_np(part, cfg(4))
  assert step_a == step_b == 4
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert jax.tree.leaves(a.batch_stats)  # batch-norm statistics are part of the checkpoint


def _one_step(mesh_spec, devices):
  config = tiny()
  task = SupervisedTask(config)
  mesh = shd.make_mesh(mesh_spec, devices)
  rules = shd.rules_from_config(config.rules)
  sh = task.state_shardings(mesh, rules)
  state = task.init_state(jax.random.key(0), mesh, sh)
  rng = np.random.default_rng(0)
  # Per-image statistics differ between the halves of the batch, so a batch norm that reduced
  # only over each device's shard would give a different update on 2x4 than on 1x1.
  images = rng.random((32, 16, 16, 1), np.float32) * np.linspace(0.2, 3, 32)[:, None, None, None]
  labels = rng.integers(0, 10, 32).astype(np.int32)
  bsh = {k: shd.batch_sharding(mesh, rules, ndim=n) for k, n in (("image", 4), ("label", 1))}
  batch = {
    "image": distributed.global_batch(images, bsh["image"]),
    "label": distributed.global_batch(labels, bsh["label"]),
  }
  state, m = task.step_fn(0, mesh, sh, rules)(state, batch)
  return jax.tree.map(np.asarray, jax.device_get(state)), float(m["train/loss"])


def test_batch_norm_statistics_are_global_over_the_data_axis():
  a, loss_a = _one_step("data:1,model:1", jax.devices()[:1])
  b, loss_b = _one_step("data:2,model:4", jax.devices())
  assert loss_a == pytest.approx(loss_b, rel=1e-5)
  for x, y in zip(jax.tree.leaves(a.batch_stats), jax.tree.leaves(b.batch_stats)):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_features_equal_on_1x1_and_2x4_meshes(full_run):
  wd, _ = full_run
  one = families.load_features(wd, mesh=shd.make_mesh("data:1,model:1", jax.devices()[:1]))
  eight = families.load_features(wd, mesh=shd.make_mesh("data:2,model:4", jax.devices()))
  assert one.family == "supervised" and one.layers[-2:] == ("pool", "logits")
  images = np.random.default_rng(1).random((10, 16, 16, 1), np.float32)
  for layer in ("stem", one.layers[-3], "pool"):
    fa = one.features(images, layer, pool=2)
    fb = eight.features(images, layer, pool=2)
    assert fa.shape[0] == 10 and fa.shape == fb.shape
    np.testing.assert_allclose(fa, fb, rtol=1e-4, atol=1e-5)
  rnd = one.random_network()
  assert rnd.name.startswith("random") and not np.allclose(
    rnd.features(images, "pool"), one.features(images, "pool")
  )


def test_unlabeled_source_is_one_clear_error(tmp_path):
  with pytest.raises(ValueError, match=r"label"):
    families.train(tiny(**{"data.source": "builtin", "eval.source": ""}), str(tmp_path))


def test_loop_rejects_unknown_family(tmp_path):
  c = tiny()
  c.family = "gan9000"
  with pytest.raises(ValueError, match=r"unknown model family 'gan9000'.*rica, supervised"):
    families.train(c, str(tmp_path))


def test_transfer_table_over_a_supervised_and_a_rica_run(full_run, tmp_path):
  from test_analyze import planted_run
  from test_transfer import small_config

  from experiments import transfer

  wd, _ = full_run
  rica = planted_run(tmp_path / "rica")
  cfg = small_config(tmp_path / "table", layers="supervised:pool,rica:layer1", mode="probe")
  out = transfer.transfer([wd, rica], cfg, log=lambda *_: None, devices=jax.devices()[:1])
  sup = f"{os.path.basename(wd)} (resception, supervised)"
  assert [r["system"] for r in out["runs"]][0] == sup
  rows = out["rows"]
  for tag in ("trained", "random init"):
    cells = rows[f"{sup}: pool ({tag})"]["cells"]
    assert len(cells["30"]["errors"]) == 3 and 0 <= cells["30"]["error"] <= 1
  assert "raw pixels" in rows and any(r.endswith("layer1 (trained)") for r in rows)
  # The two rows are different networks: trained and random-init features give other errors.
  trained = rows[f"{sup}: pool (trained)"]["cells"]["1000"]["errors"]
  assert trained != rows[f"{sup}: pool (random init)"]["cells"]["1000"]["errors"]


def test_analyze_runs_on_a_supervised_run(full_run):
  from experiments import analyze
  from experiments.configs import analyze as analyze_config

  wd, _ = full_run
  cfg = analyze_config.get_config("fast")
  cfg.probe.limit = 300
  cfg.stimuli.num_images = 64
  summary = analyze.analyze(wd, cfg, log=lambda *_: None)
  assert summary["layer"] == "pool" and "filters" not in summary
  sel = summary["selectivity"]
  assert 0.5 <= sel["trained"]["best_accuracy"] <= 1 and sel["chance"] == pytest.approx(0.5)
  assert os.path.exists(os.path.join(wd, "top_stimuli.png"))
