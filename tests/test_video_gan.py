"""The video GAN (family ``video_gan``): the block chain's clip sizes, the frame-growth and
resolution-growth fade-ins at their endpoints, the curriculum's clip length (host and traced),
and the tiny preset end to end (trains across the frame and resolution stages, resumes bitwise
across a stage boundary, its discriminator's pooled clip features load with a random twin)."""

from __future__ import annotations

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import base
from experiments.configs import video_gan as video_gan_config
from livermore_brain import families
from livermore_brain import sharding as shd
from livermore_brain.gan import video_nets as vn
from livermore_brain.gan.curriculum import Schedule
from livermore_brain.train import loop, metrics, run_dir

ONE = jax.devices()[:1]


def tiny(**overrides):
  return base.override(video_gan_config.get_config("tiny"), {"tensorboard": False, **overrides})


def test_block_chain_sizes_and_network_shapes():
  assert vn.geometry("sttss", 8, 32) == [(2, 4), (2, 8), (4, 8), (8, 8), (8, 16), (8, 32)]
  with pytest.raises(ValueError, match="divisible"):
    vn.geometry("ttt", 4, 8)
  with pytest.raises(ValueError, match="'t'"):
    vn.geometry("sx", 4, 8)
  g = vn.VideoGenerator((8, 8, 4), "ts", (2, 4), channels=3)
  d = vn.VideoDiscriminator((8, 8, 4), "ts", (2, 4))
  z = jnp.zeros((3, 5))
  clip = jnp.zeros((3, 4, 8, 8, 3))
  gv = jax.eval_shape(lambda k: nn.unbox(g.init(k, z, 2, 1.0, train=False)), jax.random.key(0))
  dv = jax.eval_shape(lambda k: nn.unbox(d.init(k, clip, 2, 1.0, train=False)), jax.random.key(1))
  for level, shape in enumerate([(2, 4, 4), (4, 4, 4), (4, 8, 8)]):
    x = jax.eval_shape(lambda v, lv=level: g.apply(v, z, lv, 1.0, train=False), gv)
    assert x.shape == (3, *shape, 3)
    logit = jax.eval_shape(lambda v, x, lv=level: d.apply(v, x, lv, 1.0, train=False), dv, x)
    assert logit.shape == (3,)
  assert d.feature_layers() == ("conv4x8", "conv4x4", "conv2x4", "logits")
  apply = lambda v: d.apply(v, clip, 2, 1.0, train=False, mutable=["intermediates"])[1]
  inter = jax.eval_shape(apply, dv)["intermediates"]
  assert {k: v[0].shape for k, v in inter.items()} == {
    "conv4x8": (3, 4, 8, 8, 4),
    "conv4x4": (3, 4, 4, 4, 8),
    "conv2x4": (3, 2, 4, 4, 8),
    "logits": (3, 1),
  }
  # every level's heads exist from init: one state shape for every stage
  assert {f"to_rgb{k}" for k in range(3)} <= set(gv["params"])
  assert {f"from_rgb{k}" for k in range(3)} <= set(dv["params"])


def _perturb(params, name):
  return {k: (jax.tree.map(lambda a: a + 0.5, v) if k == name else v) for k, v in params.items()}


@pytest.mark.parametrize("level, kind", [(1, "t"), (2, "s")])
def test_fade_in_is_the_shorter_or_smaller_clip_at_0_and_the_new_block_at_1(level, kind):
  """Level 1 grows the frames (a ``t`` block), level 2 the pixels (``s``): at alpha = 0 the
  generator's clip is the previous level's, frames or pixels repeated, and the discriminator
  judges the pooled clip with the previous level's network; at alpha = 1 the old head is unused
  and at alpha = 0 the new block is."""
  g = vn.VideoGenerator((8, 8, 4), "ts", (2, 4))
  d = vn.VideoDiscriminator((8, 8, 4), "ts", (2, 4))
  z = jax.random.normal(jax.random.key(1), (6, 5))
  size = vn.geometry("ts", 4, 8)[level]
  x = jax.random.uniform(jax.random.key(2), (6, size[0], size[1], size[1], 1)) * 2 - 1
  gv = jax.jit(lambda k: nn.unbox(g.init(k, z, 2, 1.0, train=False)))(jax.random.key(3, impl="rbg"))
  clip = jnp.zeros((1, 4, 8, 8, 1))
  dv = jax.jit(lambda k: nn.unbox(d.init(k, clip, 2, 1.0, train=False)))(
    jax.random.key(4, impl="rbg")
  )

  @functools.partial(jax.jit, static_argnums=1)
  def gen(v, lv, alpha):
    return g.apply(v, z, lv, alpha, train=True, mutable=["batch_stats"])[0]

  @functools.partial(jax.jit, static_argnums=2)
  def dis(v, clip, lv, alpha):
    return d.apply(v, clip, lv, alpha, train=True, mutable=["batch_stats"])[0]

  np.testing.assert_allclose(gen(gv, level, 0.0), vn.up(gen(gv, level - 1, 1.0), kind), atol=1e-6)
  low = vn.down_kind(x, kind)
  f, r = vn.geometry("ts", 4, 8)[level - 1]
  assert low.shape == (6, f, r, r, 1)
  np.testing.assert_allclose(dis(dv, x, level, 0.0), dis(dv, low, level - 1, 1.0), atol=1e-5)
  g_old = {**gv, "params": _perturb(gv["params"], f"to_rgb{level - 1}")}
  np.testing.assert_array_equal(gen(gv, level, 1.0), gen(g_old, level, 1.0))
  g_new = {**gv, "params": _perturb(gv["params"], f"up{level}")}
  np.testing.assert_array_equal(gen(gv, level, 0.0), gen(g_new, level, 0.0))
  d_old = {**dv, "params": _perturb(dv["params"], f"from_rgb{level - 1}")}
  np.testing.assert_array_equal(dis(dv, x, level, 1.0), dis(d_old, x, level, 1.0))
  assert not np.allclose(gen(gv, level, 0.5), gen(g_old, level, 0.5))  # in between: both


THREE_GAMES = (  # 2x4 -> 4x4 -> 4x8 on blocks "ts": the frames, then the resolution
  "steps=4,frames=full/2,res=full/2,noise=0.2>0.1,blur=1>0,smooth=0.1;"
  "steps=4,res=full/2,fade=2,noise=0.1;res=full,fade=4,noise=0.1>0"
)


def test_the_curriculum_grows_the_frames_then_the_resolution():
  task = families.make_task(tiny(curriculum=THREE_GAMES, num_steps=16, **{"model.blocks": "ts"}))
  s = task.schedule
  assert [(s.frames(i), s.resolution(i)) for i in range(3)] == [(2, 4), (4, 4), (4, 8)]
  assert task.stage_levels == (0, 1, 2)
  assert [s.stage_at(t) for t in (0, 3, 4, 7, 8, 15)] == [0, 0, 1, 1, 2, 2]
  assert [s.fade(i) for i in range(3)] == [0, 2, 4]  # both growths fade in
  assert [s.alpha_at(t) for t in (4, 5, 6, 8, 10, 12)] == [0, 0.5, 1, 0, 0.5, 1]
  for t in (0, 5, 9):  # the traced table agrees with the host
    i = s.stage_at(t)
    p = s.at(jnp.int32(t), jnp.int32(i), jnp.int32(s.starts()[i]))
    assert (int(p["frames"]), int(p["res"])) == (s.frames(i), s.resolution(i))
    assert float(p["alpha"]) == pytest.approx(s.alpha_at(t))
  # a real clip is pooled to the stage's size: 2 frames at 4x4 are means of 2x2x2 blocks
  clip = np.random.default_rng(0).random((1, 4, 8, 8, 1), np.float32)
  want = clip.reshape(1, 2, 2, 4, 2, 4, 2, 1).mean(axis=(2, 4, 6)) * 2 - 1
  np.testing.assert_allclose(task.real_at(clip, 0), want, atol=1e-6)
  none = families.make_task(tiny(curriculum="none", **{"model.blocks": "ts"}))
  assert none.stage_levels == (2,) and none.schedule.fade(0) == 0  # the control: one full stage
  with pytest.raises(ValueError, match="never produces"):
    families.make_task(tiny(curriculum="steps=4,res=full/2;res=full"))  # "st": no 4x4 clip
  with pytest.raises(ValueError, match="full clips"):
    Schedule.from_config("res=full,frames=2", 10, 8, full_frames=4)
  with pytest.raises(ValueError, match="frames"):
    Schedule.from_config("steps=2,frames=4;frames=2", 10, 8, full_frames=4)


# ---- the tiny preset end to end ---------------------------------------------------------------
@pytest.fixture(scope="module")
def task():
  """One task for every run below: each game's step compiles once (the schedule is the 8-step
  run's whatever a run's ``num_steps``, so a shorter run is a prefix of the full one)."""
  return families.make_task(tiny())


@pytest.fixture(scope="module")
def full_run(task, tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("video_gan") / "run")
  summary = loop.run(task, tiny(), wd, devices=ONE)
  return wd, summary


def test_tiny_run_grows_the_clip_and_writes_samples(full_run):
  wd, summary = full_run
  assert summary["final_step"] == 8
  train = [r for r in metrics.read_metrics(wd) if "d/loss" in r]
  for key in ("d/acc_real", "d/acc_fake", "g/loss", "d/grad_norm", "g/grad_norm"):
    assert all(np.isfinite(r[key]) for r in train), key
  # logged every 2 steps (window means): the full 4 frames from step 4, faded in over 2 steps
  assert [r["curriculum/frames"] for r in train] == [2, 2, 4, 4]
  assert [r["curriculum/resolution"] for r in train] == [8, 8, 8, 8]
  assert [r["curriculum/alpha"] for r in train] == pytest.approx([1, 1, 0.25, 1])
  assert all(0 < r["quality/diversity"] < 5 for r in train)
  for f in ("samples.png", "samples/step_0000004.png"):
    assert os.path.getsize(os.path.join(wd, f)) > 1000, f


def state_np(workdir, task):
  mesh = shd.make_mesh("data:1,model:1", ONE)
  state, meta = run_dir.restore(workdir, task, mesh, shd.rules_from_config(tiny().rules))
  return int(meta["step"]), jax.tree.map(np.asarray, jax.device_get(state))


def test_resume_is_bitwise_across_a_stage_boundary(task, full_run, tmp_path):
  wd, _ = full_run
  part = str(tmp_path / "part")
  loop.run(task, tiny(num_steps=3), part, devices=ONE)  # stage 0 only
  loop.run(task, tiny(), part, devices=ONE)  # resumes 3 -> 8 (the clip grows at step 4)
  step_a, a = state_np(wd, task)
  step_b, b = state_np(part, task)
  assert step_a == step_b == 8 and int(a.stage) == 1
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert jax.tree.leaves(a.g_stats) and jax.tree.leaves(a.d_opt)  # both players checkpointed


def test_discriminator_clip_features_and_their_random_twin(full_run):
  wd, _ = full_run
  fx = families.load_features(wd, devices=ONE)
  assert fx.family == "video_gan" and fx.layers == ("conv4x8", "conv2x8", "conv2x4", "logits")
  clips = np.random.default_rng(1).random((5, 4, 8, 8, 1), np.float32)
  f = fx.features(clips, "conv2x8", pool=2)
  assert f.shape == (5, 2 * 2 * 8) and fx.feature_shape("conv2x8", pool=2) == (2, 2, 8)
  # pooled over time, then to a 2x2 grid: block means of the layer's map (an independent path)
  maps = fx.intermediates(fx.params, fx.batch_stats, jnp.asarray(clips))["conv2x8"][0]
  maps = np.asarray(maps)
  want = maps.reshape(5, 2, 2, 4, 2, 4, 8).mean(axis=(1, 3, 5)).reshape(5, -1)
  np.testing.assert_allclose(f, want, rtol=1e-5, atol=1e-6)
  twin = fx.random_network()
  assert twin.name.startswith("random") and twin.step == 0
  assert not np.allclose(twin.features(clips, "conv2x8", pool=2), f)
  assert fx.features(clips[:3], "logits").shape == (3, 1)
