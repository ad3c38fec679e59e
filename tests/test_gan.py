"""The GAN family: the curriculum schedule (stage at a step, fade-in, the equilibrium criterion),
the losses against hand-computed values, the fade-in's endpoints, a toy distribution matched,
and the tiny preset end to end (trains, resumes bitwise across a stage boundary, features load
into the transfer table)."""

from __future__ import annotations

import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import base
from experiments.configs import gan as gan_config
from livermore_brain import families
from livermore_brain import sharding as shd
from livermore_brain.gan import losses, nets, quality
from livermore_brain.gan.curriculum import Schedule, parse
from livermore_brain.gan.task import GanTask, gaussian_blur
from livermore_brain.train import metrics, run_dir

ONE = jax.devices()[:1]


def tiny(**overrides):
  return base.override(gan_config.get_config("tiny"), {"tensorboard": False, **overrides})


# ---- the curriculum ---------------------------------------------------------------------------
def test_schedule_stages_lengths_and_fade_in():
  s = Schedule.from_config("progressive", 1000, 32)
  assert [s.resolution(i) for i in range(3)] == [8, 16, 32]
  assert s.starts() == [0, 150, 400] and [s.fade(i) for i in range(3)] == [0, 100, 100]
  assert [s.stage_at(t) for t in (0, 149, 150, 399, 400, 999)] == [0, 0, 1, 1, 2, 2]
  assert s.alpha_at(10) == 1.0  # no lower path in the first stage
  assert [s.alpha_at(t) for t in (150, 175, 249, 250, 300)] == [0.0, 0.25, 0.99, 1.0, 1.0]
  none = Schedule.from_config("none", 1000, 32)
  assert len(none.stages) == 1 and none.resolution(0) == 32 and none.levels == (3,)
  with pytest.raises(ValueError, match="unknown curriculum stage field 'nosie'"):
    parse("nosie=0.1", 100, 32)
  with pytest.raises(ValueError, match="last curriculum stage must play at the full"):
    Schedule.from_config("res=16", 100, 32)


def _simulate(s: Schedule, accs):
  """Run the traced schedule eagerly over D accuracies; returns stages and game parameters."""
  stage, start, ema, band = jnp.int32(0), jnp.int32(0), jnp.float32(1.0), jnp.int32(0)
  out = []
  for t, acc in enumerate(accs):
    p = s.at(jnp.int32(t), stage, start)
    out.append((int(stage), float(p["alpha"]), float(p["noise"]), bool(p["do_d"])))
    stage, start, ema, band = s.advance(jnp.int32(t), stage, start, ema, band, jnp.float32(acc))
  return out


def test_traced_schedule_matches_the_host_schedule():
  spec = "steps=5,res=full/2,noise=0.4>0,d_every=2; steps=6,res=full,fade=4; res=full,noise=0.2"
  s = Schedule.from_config(spec, 20, 16)
  got = _simulate(s, [0.9] * 20)
  assert [g[0] for g in got] == [s.stage_at(t) for t in range(20)]
  np.testing.assert_allclose([g[1] for g in got], [s.alpha_at(t) for t in range(20)], atol=1e-7)
  # noise: 0.4 -> 0 linearly over stage 0's 5 steps; the last stage's constant 0.2
  np.testing.assert_allclose([g[2] for g in got[:5]], [0.4, 0.32, 0.24, 0.16, 0.08], atol=1e-6)
  assert got[11][2] == pytest.approx(0.2)
  assert [g[3] for g in got[:5]] == [True, False, True, False, True]  # D every 2nd step


def test_equilibrium_criterion_advances_early_and_length_is_a_maximum():
  cfg = tiny().curriculum_rule
  cfg.band, cfg.patience, cfg.ema = 0.1, 3, 0.5
  s = Schedule.from_config("steps=50,until=equilibrium,res=full; res=full", 100, 16, cfg)
  # EMA from 1: acc 1,1 keep it at 1; then 0.5: EMA 0.75, 0.625, 0.5625 (in band), 0.53, 0.52:
  # the third in-band step is t=6, so stage 1 starts at step 7.
  stages = [g[0] for g in _simulate(s, [1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])]
  assert stages == [0] * 7 + [1, 1]
  # D always wins: the stage runs its maximum length.
  stages = [g[0] for g in _simulate(s, [1.0] * 52)]
  assert stages.index(1) == 50


# ---- losses -----------------------------------------------------------------------------------
def _sp(x):
  return math.log1p(math.exp(x))


def test_losses_against_hand_computed_values():
  r, f = jnp.array([2.0, -1.0]), jnp.array([0.5, -3.0])
  ns_d = (_sp(-2) + _sp(1)) / 2 + (_sp(0.5) + _sp(-3)) / 2
  assert float(losses.d_loss("nonsaturating", r, f)) == pytest.approx(ns_d, rel=1e-6)
  sm = (0.9 * _sp(-2) + 0.1 * _sp(2) + 0.9 * _sp(1) + 0.1 * _sp(-1)) / 2 + (_sp(0.5) + _sp(-3)) / 2
  assert float(losses.d_loss("nonsaturating", r, f, 0.1)) == pytest.approx(sm, rel=1e-6)
  assert float(losses.g_loss("nonsaturating", f)) == pytest.approx((_sp(-0.5) + _sp(3)) / 2)
  # hinge: D = mean(relu(1 - r)) + mean(relu(1 + f)) = (0 + 2)/2 + (1.5 + 0)/2
  assert float(losses.d_loss("hinge", r, f)) == pytest.approx(1.75)
  assert float(losses.g_loss("hinge", f)) == pytest.approx(1.25)
  # least squares: ((2-1)^2 + (-1-1)^2)/4 + (0.25 + 9)/4
  assert float(losses.d_loss("lsgan", r, f)) == pytest.approx(5 / 4 + 9.25 / 4)
  assert float(losses.g_loss("lsgan", f)) == pytest.approx((0.25 + 16) / 4)
  assert [float(a) for a in losses.accuracy("nonsaturating", r, f)] == [0.5, 0.5]
  assert [float(a) for a in losses.accuracy("lsgan", r, f)] == [0.5, 0.5]
  with pytest.raises(ValueError, match="unknown GAN loss"):
    losses.check("wasserstein")


def test_blur_is_the_identity_at_zero_sigma_and_keeps_the_mean():
  x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 1))
  np.testing.assert_allclose(gaussian_blur(x, 0.0), x, atol=1e-6)
  y = gaussian_blur(x, 1.5)
  assert float(jnp.std(y)) < 0.7 * float(jnp.std(x))
  const = jnp.full((1, 8, 8, 1), 0.3)
  np.testing.assert_allclose(gaussian_blur(const, 2.0), const, atol=1e-6)


# ---- the networks' fade-in --------------------------------------------------------------------
def _perturb(params, prefix):
  return {
    k: jax.tree.map(lambda a: a + 1.0, v) if k.startswith(prefix) else v for k, v in params.items()
  }


def test_fade_in_is_the_low_path_at_0_and_the_new_layers_at_1():
  g, d = nets.Generator((8, 8, 4)), nets.Discriminator((8, 8, 4))
  z = jax.random.normal(jax.random.key(1), (6, 5))
  x = jax.random.uniform(jax.random.key(2), (6, 16, 16, 1)) * 2 - 1
  gv = nn.unbox(g.init(jax.random.key(3), z, 2, 1.0, train=False))
  dv = nn.unbox(d.init(jax.random.key(4), x, 2, 1.0, train=False))

  def gen(v, level, alpha):
    return g.apply(v, z, level, alpha, train=True, mutable=["batch_stats"])[0]

  def dis(v, img, level, alpha):
    return d.apply(v, img, level, alpha, train=True, mutable=["batch_stats"])[0]

  np.testing.assert_allclose(gen(gv, 2, 0.0), nets.up2(gen(gv, 1, 1.0)), atol=1e-6)
  np.testing.assert_allclose(dis(dv, x, 2, 0.0), dis(dv, nets.down(x, 2), 1, 1.0), atol=1e-5)
  # alpha = 1: the lower level's output head plays no part; alpha = 0: the new block none
  g_rgb1 = {**gv, "params": _perturb(gv["params"], "to_rgb1")}
  np.testing.assert_array_equal(gen(gv, 2, 1.0), gen(g_rgb1, 2, 1.0))
  g_up2 = {**gv, "params": _perturb(gv["params"], "up2")}
  np.testing.assert_array_equal(gen(gv, 2, 0.0), gen(g_up2, 2, 0.0))
  d_rgb1 = {**dv, "params": _perturb(dv["params"], "from_rgb1")}
  np.testing.assert_array_equal(dis(dv, x, 2, 1.0), dis(d_rgb1, x, 2, 1.0))
  assert not np.allclose(gen(gv, 2, 0.5), gen(g_rgb1, 2, 0.5))  # in between: both


# ---- a toy distribution -----------------------------------------------------------------------
def test_a_1d_gaussian_is_matched():
  """G(z) = a z + b against N(3, 0.5^2), an MLP D, the non-saturating game: the learned mean and
  spread land within tolerance of the data's in a couple of seconds."""
  d_net = nn.Sequential([nn.Dense(32), nn.leaky_relu, nn.Dense(32), nn.leaky_relu, nn.Dense(1)])
  dp = d_net.init(jax.random.key(0), jnp.zeros((1, 1)))
  gp = {"a": jnp.float32(1.0), "b": jnp.float32(0.0)}
  g_tx, d_tx = optax.adam(1e-2, b1=0.5), optax.adam(1e-2, b1=0.5)

  def step(carry, key):
    gp, dp, go, do = carry
    kz, kx = jax.random.split(key)
    z = jax.random.normal(kz, (256, 1))
    real = 3.0 + 0.5 * jax.random.normal(kx, (256, 1))
    gen = lambda g: g["a"] * z + g["b"]
    dl = lambda d: losses.d_loss(
      "nonsaturating", d_net.apply(d, real)[:, 0], d_net.apply(d, gen(gp))[:, 0]
    )
    u, do = d_tx.update(jax.grad(dl)(dp), do)
    dp = optax.apply_updates(dp, u)
    gl = lambda g: losses.g_loss("nonsaturating", d_net.apply(dp, gen(g))[:, 0])
    u, go = g_tx.update(jax.grad(gl)(gp), go)
    gp = optax.apply_updates(gp, u)
    return (gp, dp, go, do), (gp["b"], jnp.abs(gp["a"]))

  keys = jax.random.split(jax.random.key(7), 3000)
  _, (b, a) = jax.lax.scan(step, (gp, dp, g_tx.init(gp), d_tx.init(dp)), keys)
  mean, sd = float(jnp.mean(b[-500:])), float(jnp.mean(a[-500:]))
  assert abs(mean - 3.0) < 0.2 and abs(sd - 0.5) < 0.2, (mean, sd)


def test_frechet_distance_and_diversity():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(2000, 3))
  assert quality.frechet(a, a) == pytest.approx(0.0, abs=1e-6)
  # two Gaussians with known moments: |dmu|^2 + sum (s1 - s2)^2 for diagonal covariances
  b = rng.normal(size=(2000, 3)) * 2.0 + 1.0
  assert quality.frechet(a, b) == pytest.approx(3 * 1.0 + 3 * (1.0 - 2.0) ** 2, rel=0.1)
  collapsed = np.repeat(a[:1], 50, axis=0) + 1e-3 * rng.normal(size=(50, 3))
  assert float(quality.diversity(jnp.asarray(collapsed), jnp.asarray(a[:50]))) < 0.01


# ---- the tiny preset end to end ----------------------------------------------------------------
@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("gan_full"))
  return wd, families.train(tiny(), wd, devices=ONE)


def state_np(workdir, config):
  task = GanTask(config)
  mesh = shd.make_mesh("data:1,model:1", ONE)
  state, meta = run_dir.restore(workdir, task, mesh, shd.rules_from_config(config.rules))
  return int(meta["step"]), jax.tree.map(np.asarray, jax.device_get(state))


def test_tiny_run_logs_the_game_and_writes_figures(full_run):
  wd, summary = full_run
  assert summary["final_step"] == 12
  rows = metrics.read_metrics(wd)
  train = [r for r in rows if "d/loss" in r]
  for key in ("d/acc_real", "d/acc_fake", "g/loss", "d/grad_norm", "g/grad_norm"):
    assert all(np.isfinite(r[key]) for r in train), key
  assert [r["curriculum/stage"] for r in train] == [0, 0, 1, 1, 1, 1]  # stage 1 from step 4
  assert [r["curriculum/resolution"] for r in train] == [8, 8, 16, 16, 16, 16]
  # fade-in over steps 4..7: per-step alpha 0, .25, .5, .75, then 1; logged as window means
  assert [r["curriculum/alpha"] for r in train][2:] == pytest.approx([0.125, 0.625, 1.0, 1.0])
  assert all(0 < r["quality/diversity"] < 5 for r in train)
  ev = [r for r in rows if "eval/fd" in r][-1]
  assert 0 < ev["eval/fd_train"] < ev["eval/fd_noise"] and ev["eval/fd"] > 0
  for f in ("samples.png", "interpolation.png", "samples/step_0000006.png"):
    assert os.path.getsize(os.path.join(wd, f)) > 1000, f


def test_resume_is_bitwise_across_a_stage_boundary(full_run, tmp_path):
  wd, _ = full_run
  part = str(tmp_path / "part")
  families.train(tiny(num_steps=3, **{"eval.source": ""}), part, devices=ONE)  # stage 0 only
  families.train(tiny(**{"eval.source": ""}), part, devices=ONE)  # resumes 3 -> 12 (stage at 4)
  step_a, a = state_np(wd, tiny())
  step_b, b = state_np(part, tiny())
  assert step_a == step_b == 12 and int(a.stage) == 1
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert jax.tree.leaves(a.g_stats) and jax.tree.leaves(a.d_opt)  # both players checkpointed


def test_discriminator_features_load_and_enter_the_transfer_table(full_run, tmp_path):
  from test_transfer import small_config

  from experiments import transfer

  wd, _ = full_run
  fx = families.load_features(wd, devices=ONE)
  assert fx.family == "gan" and fx.layers == ("conv16", "conv8", "conv4", "logits")
  images = np.random.default_rng(1).random((5, 16, 16, 1), np.float32)
  assert fx.features(images, "conv8", pool=2).shape == (5, 2 * 2 * 8)
  assert fx.feature_shape("conv4") == (4, 4, 16)
  assert not np.allclose(
    fx.random_network().features(images, "conv4"), fx.features(images, "conv4")
  )
  cfg = small_config(tmp_path / "table", layers="gan:conv8", mode="probe")
  out = transfer.transfer([wd], cfg, log=lambda *_: None, devices=ONE)
  name = f"{os.path.basename(wd)} (dcgan discriminator, gan)"
  for tag in ("trained", "random init"):
    cells = out["rows"][f"{name}: conv8 ({tag})"]["cells"]
    assert len(cells["30"]["errors"]) == 3 and 0 <= cells["30"]["error"] <= 1


def _one_step(mesh_spec, devices):
  from livermore_brain import distributed

  config = tiny()
  task = GanTask(config)
  mesh = shd.make_mesh(mesh_spec, devices)
  rules = shd.rules_from_config(config.rules)
  sh = task.state_shardings(mesh, rules)
  state = task.init_state(jax.random.key(0), mesh, sh)
  images = np.random.default_rng(0).random((16, 16, 16, 1), np.float32)
  images *= np.linspace(0.2, 1, 16, dtype=np.float32)[:, None, None, None]  # halves differ
  batch = {"image": distributed.global_batch(images, shd.batch_sharding(mesh, rules))}
  state, m = task.step_fn(0, mesh, sh, rules)(state, batch)
  return jax.tree.map(np.asarray, jax.device_get(state)), float(m["d/loss"])


def test_one_step_is_the_same_on_1x1_and_2x4_meshes():
  """Data parallel (and G's projection split over ``model``): batch-norm statistics are global,
  so the update does not depend on the mesh."""
  a, loss_a = _one_step("data:1,model:1", ONE)
  b, loss_b = _one_step("data:2,model:4", jax.devices())
  assert loss_a == pytest.approx(loss_b, rel=1e-5)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_cifar10_preset_trains_on_mock_tfds(tmp_path):
  """The report's setting as configured (TFDS cifar10 train split, 32x32x3, centre crops and
  flips; the quality metric against the TFDS test split) runs end to end on
  `tfds.testing.mock_data`; widths, batch, length and the curriculum (one stage: one compile;
  the curricula have their own tests) are shrunk to test size."""
  import tensorflow_datasets as tfds

  c = gan_config.get_config("cifar10")
  assert (c.data.source, c.eval.source) == ("tfds:cifar10:train", "tfds:cifar10:test")
  c.tensorboard = False
  c.curriculum = "none"
  c.model.g_widths = c.model.d_widths = (8, 8, 8, 8)
  c.batch_size, c.num_steps, c.eval.num_samples = 8, 2, 16
  c.log_every = c.eval_every = c.checkpoint_every = 2
  with tfds.testing.mock_data(num_examples=24):
    summary = families.train(c, str(tmp_path), devices=ONE)
  assert summary["final_step"] == 2
  rows = metrics.read_metrics(str(tmp_path))
  assert [r["curriculum/resolution"] for r in rows if "d/loss" in r] == [32]
  ev = [r for r in rows if "eval/fd" in r][-1]
  assert np.isfinite(ev["eval/fd"]) and ev["eval/fd_noise"] > ev["eval/fd_train"] >= 0
  fx = families.load_features(str(tmp_path), devices=ONE)
  assert fx.features(np.zeros((3, 32, 32, 3), np.float32), "conv4").shape == (3, 4 * 4 * 8)


def test_compare_reads_equilibrium_wins_and_fd_over_seeds(tmp_path):
  """`experiments.gan_compare`'s reading of logged metrics, on hand-written logs of two seeds."""
  import json

  from experiments import gan_compare

  logs = {  # D accuracy at steps 10..40, then (FD, diversity) at the evaluations 20 and 40
    "0": ([1.0, 0.9, 0.6, 0.55], [(6.0, 0.5), (4.0, 0.9)]),
    "1": ([0.7, 0.6, 0.97, 0.99], [(8.0, 0.3), (5.0, 0.1)]),
  }
  results = {"progressive": {}}
  for seed, (acc, ev) in logs.items():
    wd = tmp_path / f"progressive-s{seed}"
    wd.mkdir()
    rows = [{"step": 10 * (i + 1), "d/accuracy": a} for i, a in enumerate(acc)]
    rows += [
      {"step": s, "eval/fd": f, "eval/diversity": d, "eval/fd_train": 1.0, "eval/fd_noise": 9.0}
      for s, (f, d) in zip((20, 40), ev)
    ]
    (wd / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    results["progressive"][seed] = gan_compare.analyze_run(str(wd), 40, 0.15, 0.95, 0.3)
  a, b = results["progressive"]["0"], results["progressive"]["1"]
  # seed 0: in 0.5 ± 0.15 from step 30 to the end, <= 0.9 from 20; the last fifth (step 40) 0.55
  assert (a["steps_to_equilibrium"], a["steps_to_alive"]) == (30, 20)
  assert a["final_d_accuracy"] == pytest.approx(0.55) and not a["d_wins"] and not a["collapsed"]
  # seed 1: leaves the band at the end, D wins outright (0.99 >= 0.95), diversity 0.1 < 0.3
  assert b["steps_to_equilibrium"] is None and b["steps_to_alive"] is None
  assert b["d_wins"] and b["collapsed"] and (b["fd"], b["diversity"]) == (5.0, 0.1)
  md = gan_compare.to_markdown(results, dict(band=0.15, d_wins=0.95, collapse=0.3, num_steps=40))
  assert "| progressive | 1/2 | 30 | 1/2 | 20 | 1/2 | 1/2 | 4.5 ± 0.71 | 0.5 ± 0.57 |" in md
  # FD at 20: 7 ± 1.4, at 40: 4.5 ± 0.71; diversity 0.4 ± 0.14, 0.5 ± 0.57
  assert "| progressive | 7 ± 1.4 | 4.5 ± 0.71 | 0.4 ± 0.14 | 0.5 ± 0.57 |" in md
