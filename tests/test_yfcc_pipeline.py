"""The yfcc100m source end to end: exact skip counts, order, resume, shards, whitening, TFDS."""

from __future__ import annotations

import os

import numpy as np
import pytest

from livermore_brain import data
from livermore_brain.data import fixtures, yfcc

GOOD = {1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008}
IMAGE_REASONS = {"decode_error": 1, "empty_file": 1, "not_image": 1, "missing_file": 1}


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
  return fixtures.write_yfcc_fixture(str(tmp_path_factory.mktemp("yfcc")))


def _cfg(fx, layout=24, **kw):
  cfg = data.default_config()
  cfg.source = f"yfcc100m:{fx['metadata'][layout]}"
  cfg.image_dir = fx["image_dir"]
  cfg.whiten = False
  cfg.cache_decoded = False
  cfg.update(kw)
  return cfg


def _pipe(fx, layout=24, seed=0, batch=4, pi=0, pc=1, workdir=None, **kw):
  return data.make_pipeline(
    _cfg(fx, layout, **kw), image_size=16, channels=3, global_batch=batch, seed=seed,
    process_index=pi, process_count=pc, workdir=workdir,
  )  # fmt: skip


def _ids(pipe, batch):
  return [yfcc_id(pipe, off) for off in batch["item"]]


def yfcc_id(pipe, offset):
  with open(pipe.source.path, "rb") as f:
    f.seek(int(offset))
    return yfcc.parse_line(f.readline()).photo_id


def _take(pipe, n, start=0):
  it = pipe.iterate(start_batch=start, return_meta=True)
  return [next(it) for _ in range(n)]


@pytest.mark.parametrize("layout", [24, 25])
def test_one_epoch_exact_counts(fx, layout):
  pipe = _pipe(fx, layout)
  assert pipe.local_batch == 4
  assert pipe.bad_counts() == {"skipped_videos": 1, "malformed_line": 2}  # known from the index
  batches = _take(pipe, 3)  # 12 photos = one epoch
  for b in batches:
    assert b["image"].shape == (4, 16, 16, 3) and b["image"].dtype == np.float32
    assert np.isfinite(b["image"]).all()
  ids = [i for b in batches for i in _ids(pipe, b)]
  assert len(ids) == 12 and set(ids) == GOOD  # every valid photo; bad slots replaced by good ones
  assert sum(int((b["reason"] > 0).sum()) for b in batches) == 4
  assert pipe.bad_counts() == {"skipped_videos": 1, "malformed_line": 2, **IMAGE_REASONS}
  summary = data.summarize_bad_counts(pipe.bad_counts())
  assert summary.startswith("skipped 4 images (decode_error=1") and "2 malformed_line" in summary
  _take(pipe, 3, start=3)  # the second epoch skips the same four again
  assert pipe.bad_counts() == {
    "skipped_videos": 1, "malformed_line": 2, **{k: 2 * v for k, v in IMAGE_REASONS.items()},
  }  # fmt: skip


def test_deterministic_and_seeded(fx):
  a, b, c = (_take(_pipe(fx, seed=s, crop="random"), 3) for s in (0, 0, 1))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["item"], y["item"])
  assert any(not np.array_equal(x["item"], z["item"]) for x, z in zip(a, c))
  assert not np.allclose(a[0]["image"], c[0]["image"])


def test_resume_is_exact_and_reads_nothing_before(fx):
  fresh = _take(_pipe(fx, crop="random"), 9)
  for k in (1, 4, 7):  # 3 batches per epoch: mid-epoch and later epochs
    resumed = _take(_pipe(fx, crop="random"), 2, start=k)
    for got, want in zip(resumed, fresh[k : k + 2]):
      np.testing.assert_array_equal(got["image"], want["image"])
      np.testing.assert_array_equal(got["item"], want["item"])
      np.testing.assert_array_equal(got["example"], want["example"])
  pipe = _pipe(fx, prefetch=1, num_parallel_calls=2)
  it = pipe.iterate(start_batch=100_000)
  first = next(it)["image"]
  assert first.shape == (4, 16, 16, 3)
  # 100,000 batches were skipped by arithmetic: only about a batch or three were read.
  assert 0 < pipe.reads <= 40, pipe.reads


def test_process_shards_disjoint_and_complete(fx):
  pipes = [_pipe(fx, pi=p, pc=2) for p in range(2)]
  assert [p.local_batch for p in pipes] == [2, 2]
  shard_ids = [
    {yfcc_id(p, off) for off in p.source.index.offsets} for p in pipes
  ]  # fmt: skip
  assert not shard_ids[0] & shard_ids[1] and shard_ids[0] | shard_ids[1] == set(fixtures.PHOTOS)
  assert sum(p.bad_counts().get("malformed_line", 0) for p in pipes) == 2
  assert sum(p.bad_counts().get("skipped_videos", 0) for p in pipes) == 1
  runs = [_take(p, 7) for p in pipes]  # >= one epoch of each shard (7 and 5 photos)
  for k in range(7):
    examples = np.concatenate([runs[p][k]["example"] for p in range(2)])
    assert sorted(examples.tolist()) == list(range(4 * k, 4 * k + 4))
  seen = [{i for b in runs[p] for i in _ids(pipes[p], b)} for p in range(2)]
  assert seen[0] <= shard_ids[0] and seen[1] <= shard_ids[1]
  assert seen[0] | seen[1] == GOOD
  with pytest.raises(ValueError, match="not divisible by process_count=2"):
    _pipe(fx, batch=5, pc=2)


def test_whitening_fitted_once_and_reloaded(fx, tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  a = _pipe(fx, workdir=workdir, whiten=True, whitening_samples=4000)
  assert os.path.exists(os.path.join(workdir, "whitening.npz"))
  from livermore_brain.data import whitening

  def no_refit(*args, **kw):
    raise AssertionError("whitening was refitted instead of reloaded")

  monkeypatch.setattr(whitening, "fit", no_refit)
  b = _pipe(fx, workdir=workdir, whiten=True, whitening_samples=4000)
  np.testing.assert_array_equal(a.whitening.kernel, b.whitening.kernel)
  np.testing.assert_array_equal(_take(a, 1, 5)[0]["image"], _take(b, 1, 5)[0]["image"])
  with pytest.raises(ValueError, match="3-channel"):
    data.make_pipeline(_cfg(fx, whiten=True), image_size=16, channels=1, global_batch=4,
                       workdir=workdir)  # fmt: skip


def test_clear_errors(fx, tmp_path):
  with pytest.raises(ValueError, match="image_dir"):
    _pipe(fx, image_dir=str(tmp_path / "nope"))
  with pytest.raises(ValueError, match="no such metadata file"):
    data.make_pipeline(_cfg(fx, source="yfcc100m:/no/such/file"), 16, 3, 4)
  empty = tmp_path / "empty_images"
  empty.mkdir()
  with pytest.raises(ValueError, match="no decodable image"):
    _pipe(fx, image_dir=str(empty), whiten=True)  # whitening sample finds nothing: fail early
  pipe = _pipe(fx, image_dir=str(empty))
  with pytest.raises(RuntimeError, match="undecodable"):
    next(pipe.iterate())


def test_tfds_builder_from_fixture(fx, tmp_path):
  import tensorflow_datasets as tfds

  from livermore_brain.data import yfcc_tfds

  assert "manual" in yfcc_tfds.Yfcc100m.MANUAL_DOWNLOAD_INSTRUCTIONS
  builder = yfcc_tfds.Yfcc100m(data_dir=str(tmp_path / "tfds"))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=fx["root"]))
  assert builder.info.splits["train"].num_examples == 8
  rows = list(builder.as_dataset(split="train").as_numpy_iterator())
  assert {int(r["photo_id"]) for r in rows} == GOOD
  cafe = next(r for r in rows if r["photo_id"] == 1004)
  assert cafe["title"].decode() == "Café au lait" and cafe["image"].shape == (48, 64, 3)
  assert [t.decode() for t in cafe["user_tags"]] == ["café", "food", "sunset"]
  cfg = data.default_config()
  cfg.source, cfg.tfds_data_dir, cfg.whiten = "tfds:yfcc100m", str(tmp_path / "tfds"), False
  pipe = data.make_pipeline(cfg, image_size=16, channels=3, global_batch=4)
  batches = _take(pipe, 2)
  assert sorted(np.concatenate([b["item"] for b in batches]).tolist()) == list(range(8))
  cfg.source = "tfds:yfcc100m:train[2:8]"  # a slice: 6 examples, split over 2 processes
  pipes = [data.make_pipeline(cfg, 16, 3, 2, process_index=p, process_count=2) for p in range(2)]
  items = [np.concatenate([b["item"] for b in _take(p, 3)]).tolist() for p in pipes]
  assert sorted(items[0]) == [2, 3, 4] and sorted(items[1]) == [5, 6, 7]
  cfg.source = "tfds:yfcc100m:train[50%:]"
  half = data.make_pipeline(cfg, image_size=16, channels=3, global_batch=4)
  assert sorted(_take(half, 1)[0]["item"].tolist()) == [4, 5, 6, 7]
