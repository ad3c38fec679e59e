"""The tfds source, with tfds.testing.mock_data (no download), and its clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from livermore_brain import data


def _cfg(source, **kw):
  cfg = data.default_config()
  cfg.source, cfg.whitening_samples, cfg.block_size = source, 2000, 8
  cfg.update(kw)
  return cfg


def _take(pipe, n, start=0):
  it = pipe.iterate(start_batch=start, return_meta=True)
  return [next(it) for _ in range(n)]


def test_mock_mnist_batches_and_resume():
  with tfds.testing.mock_data(num_examples=20):
    pipe = data.make_pipeline(_cfg("tfds:mnist"), image_size=12, channels=1, global_batch=4)
    assert pipe.source.key == "image" and pipe.source.total == 20
    assert pipe.crop == "center" and "tfds:mnist:train" in pipe.describe()
    fresh = _take(pipe, 8)  # 5 batches per epoch: crosses an epoch boundary
    for b in fresh:
      assert b["image"].shape == (4, 12, 12, 1) and np.isfinite(b["image"]).all()
    epoch = np.concatenate([b["item"] for b in fresh[:5]])
    assert sorted(epoch.tolist()) == list(range(20))  # a permutation of the split
    again = data.make_pipeline(_cfg("tfds:mnist"), image_size=12, channels=1, global_batch=4)
    for k in (3, 6):
      got = _take(again, 1, start=k)[0]
      np.testing.assert_array_equal(got["item"], fresh[k]["item"])
      np.testing.assert_array_equal(got["image"], fresh[k]["image"])


def test_mock_processes_split_evenly():
  with tfds.testing.mock_data(num_examples=20):
    pipes = [
      data.make_pipeline(
        _cfg("tfds:mnist:test", whiten=False), 8, 3, 4, process_index=p, process_count=2
      )  # fmt: skip
      for p in range(2)
    ]
    assert [(p.source.lo, p.source.n) for p in pipes] == [(0, 10), (10, 10)]
    items = [np.concatenate([b["item"] for b in _take(p, 5)]) for p in pipes]
    assert sorted(items[0].tolist()) == list(range(10))
    assert sorted(items[1].tolist()) == list(range(10, 20))
    assert pipes[0].local_batch == 2


def test_unprepared_dataset_is_one_clear_error(tmp_path):
  with pytest.raises(ValueError) as e:
    data.make_pipeline(_cfg("tfds:mnist", tfds_data_dir=str(tmp_path)), 16, 1, 4)
  msg = str(e.value)
  assert "tfds:mnist is not prepared in" in msg and str(tmp_path) in msg and "tfds build" in msg
  assert "\n" not in msg
  with pytest.raises(ValueError, match="no such TFDS dataset"):
    data.make_pipeline(_cfg("tfds:no_such_dataset_xyz", tfds_data_dir=str(tmp_path)), 16, 1, 4)
