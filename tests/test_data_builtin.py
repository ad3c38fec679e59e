"""The builtin source (real photographs, offline), the config surface and the folder source."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from livermore_brain import data
from livermore_brain.data import images


def _cfg(**kw):
  cfg = data.default_config()
  cfg.whitening_samples = 4000
  cfg.update(kw)
  return cfg


def test_builtin_real_photos_center_crop():
  from skimage import data as skd
  from skimage.transform import resize

  cfg = _cfg(crop="center", shuffle=False, whiten=False, normalize_eps=1e-6)
  pipe = data.make_pipeline(cfg, image_size=32, channels=3, global_batch=4, seed=0)
  assert pipe.source.names[:3] == ["astronaut", "brick", "camera"]
  b = next(pipe.iterate(return_meta=True))
  assert b["image"].shape == (4, 32, 32, 3) and b["image"].dtype == np.float32
  assert b["item"].tolist() == [0, 1, 2, 3]
  np.testing.assert_allclose(b["image"].mean(axis=(1, 2, 3)), 0, atol=1e-4)
  np.testing.assert_allclose(b["image"].std(axis=(1, 2, 3)), 1, atol=1e-3)
  ref = images.normalize(resize(skd.astronaut(), (32, 32), anti_aliasing=True) * 255, 1e-6)
  assert np.corrcoef(ref.ravel(), b["image"][0].ravel())[0, 1] > 0.97
  gray = b["image"][2]  # camera is a gray photo: three equal channels
  np.testing.assert_allclose(gray[..., 0], gray[..., 2], atol=1e-5)


def test_builtin_random_crops_whitened_deterministic():
  a, b, c = (
    data.make_pipeline(_cfg(), image_size=24, channels=1, global_batch=8, seed=s) for s in (3, 3, 4)
  )
  assert a.crop == "random" and a.whitening.kernel.shape == (9, 9, 1, 1)
  xa, xb, xc = (next(p.iterate(start_batch=2))["image"] for p in (a, b, c))
  assert xa.shape == (8, 24, 24, 1)
  np.testing.assert_array_equal(xa, xb)
  assert not np.allclose(xa, xc)
  assert "builtin" in a.describe() and "random crops" in a.describe()
  assert a.bad_counts() == {}
  assert data.measure_throughput(a, num_batches=2) > 0


@pytest.mark.parametrize(
  "kw,match",
  [
    (dict(source="nope"), "not understood"),
    (dict(crop="middle"), "data.crop"),
    (dict(whitening_patch=8), "odd"),
  ],
)
def test_config_errors(kw, match):
  with pytest.raises(ValueError, match=match):
    data.make_pipeline(_cfg(**kw), image_size=16, channels=3, global_batch=4)


def test_other_errors():
  cfg = _cfg()
  cfg.unknown_field = 1
  with pytest.raises(ValueError, match="unknown data config key 'unknown_field'"):
    data.make_pipeline(cfg, 16, 3, 4)
  with pytest.raises(ValueError, match="channels must be 1 or 3"):
    data.make_pipeline(_cfg(), 16, 2, 4)
  with pytest.raises(ValueError, match="not divisible by process_count=3"):
    data.make_pipeline(_cfg(), 16, 3, 4, process_index=0, process_count=3)
  with pytest.raises(ValueError, match="too small"):
    data.make_pipeline(_cfg(), 5, 3, 4)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("folder")
  rng = np.random.default_rng(0)
  files = ["a/1.jpg", "a/b/2.PNG", "a/b/3.gif", "c/4.bmp", "c/5.jpeg", "6.png", "7.jpg"]
  for name in files:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    arr = rng.integers(0, 255, (30 + len(name), 40, 3), dtype=np.uint8)
    Image.fromarray(arr).save(root / name)
  (root / "notes.txt").write_text("not listed")
  (root / "c" / "8.jpg").write_bytes(b"not a jpeg")
  return root


def test_folder_source_sorted_recursive_and_process_count_invariant(folder):
  listed = [p[len(str(folder)) + 1 :] for p in images.list_images(str(folder))]
  assert listed == ["6.png", "7.jpg", "a/1.jpg", "a/b/2.PNG", "a/b/3.gif", "c/4.bmp", "c/5.jpeg", "c/8.jpg"]  # fmt: skip
  cfg = _cfg(source=f"folder:{folder}", whiten=False)
  one = data.make_pipeline(cfg, 16, 3, 2)
  pipes = [data.make_pipeline(cfg, 16, 3, 2, process_index=p, process_count=2) for p in range(2)]
  its = [p.iterate(return_meta=True) for p in [one, *pipes]]
  seen = set()
  for _ in range(8):  # two epochs of 7 good images (+1 broken) at global batch 2
    a, b0, b1 = (next(it) for it in its)
    assert b0["image"].shape == b1["image"].shape == (1, 16, 16, 3)
    # The same global batch whatever the process count: process p holds slot p of it.
    np.testing.assert_array_equal(a["image"], np.concatenate([b0["image"], b1["image"]]))
    np.testing.assert_array_equal(a["item"], np.concatenate([b0["item"], b1["item"]]))
    np.testing.assert_array_equal(a["example"], np.concatenate([b0["example"], b1["example"]]))
    seen |= set(a["item"].tolist())
  assert seen == {0, 1, 2, 3, 4, 5, 6}  # all but the broken c/8.jpg (index 7)
  assert sum(p.bad_counts().get("not_image", 0) for p in pipes) == one.bad_counts()["not_image"]
  with pytest.raises(ValueError, match="no such directory"):
    data.make_pipeline(_cfg(source=f"folder:{folder}/nope"), 16, 3, 2)
