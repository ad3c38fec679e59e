"""``tfds:<name>[:<split>]``: any prepared TensorFlow Datasets dataset with an image feature.

Prepared TFDS data (TFRecord) is read sequentially, so exact resume works by *data blocks* (the
paper's unit: ``data.block_size`` examples): process ``p`` of ``P`` owns the even, contiguous range
``[N p / P, N (p + 1) / P)`` of the split (``tfds.even_splits`` style); each epoch visits its
blocks in a permuted order and each block's examples in a permuted order, both from
``(seed, epoch)``. Resuming at position ``q`` reads only the block holding ``q`` (TFDS slicing
skips whole shard files) and continues from there. Images are read encoded and decoded after the
shuffle, in parallel. Labels: the ``label`` feature when it is a ``ClassLabel`` (``class_names``
from its names), read with the images; when the task reads them, an example whose label is
missing (-1) or outside the class list is skipped for its slot and counted by the pipeline
(`pipeline.Pipeline._sequential_stream`), as for the other sources.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from livermore_brain.data import images
from livermore_brain.data.sources import whitening_sample
from livermore_brain.data.tfenv import tf  # keeps TF off the GPUs


def _first_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return text[0][:200] if text else type(e).__name__


def open_builder(name: str, data_dir: str | None):
  if name == "yfcc100m":
    from livermore_brain.data import yfcc_tfds  # noqa: F401 - registers the builder

  try:
    return tfds.builder(name, data_dir=data_dir or None)
  except Exception as e:  # noqa: BLE001 - DatasetNotFoundError and friends
    raise ValueError(
      f"tfds:{name}: no such TFDS dataset ({_first_line(e)}); see `tfds.list_builders()`"
    ) from None


def image_key(features) -> str:
  """The image feature of a FeaturesDict: ``image`` if it is one, else the first Image."""
  found = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
  if not found:
    raise ValueError(f"no Image feature in {sorted(features.keys())}")
  return "image" if "image" in found else found[0]


def _perm(m: int, *key: int) -> np.ndarray:
  return np.random.default_rng([int(k) for k in key]).permutation(m)


def _label_key(features, key: str | None) -> str | None:
  """``key`` (must exist), or ``label`` if it is a ClassLabel, else None (no labels)."""
  if key is not None:
    if key not in features:
      raise ValueError(f"no feature {key!r}; it has {sorted(features.keys())}")
    return key
  f = features["label"] if "label" in features else None
  return "label" if isinstance(f, tfds.features.ClassLabel) else None


class TfdsSource:
  """One process's contiguous range of a TFDS split, read in permuted blocks.

  ``image_feature`` / ``label_feature``: defaults ``image`` (else the first Image feature) and
  ``label`` if it is a ClassLabel (else no labels).
  """

  default_crop = "center"

  def __init__(
    self,
    name: str,
    split: str,
    data_dir: str | None,
    process_index: int = 0,
    process_count: int = 1,
    block_size: int = 960,
    image_feature: str | None = None,
    label_feature: str | None = None,
  ):
    self.name, self.split, self.data_dir = name, split, data_dir or ""
    self.process_index, self.process_count = process_index, process_count
    self.builder = open_builder(name, data_dir)
    feats = self.builder.info.features
    try:
      if image_feature is not None and image_feature not in feats:
        raise ValueError(f"no feature {image_feature!r}; it has {sorted(feats.keys())}")
      self.key = image_feature or image_key(feats)
      self.label_key = _label_key(feats, label_feature)
    except ValueError as e:
      raise ValueError(f"tfds:{name}: {e}") from None
    self.class_names = None
    if self.label_key is not None:
      lf = feats[self.label_key]
      names = getattr(lf, "names", None)
      self.class_names = tuple(names) if names else None
    self.base, self.offset, self.total = self._resolve_split()
    self.lo = self.offset + self.total * process_index // process_count
    self.n = self.offset + self.total * (process_index + 1) // process_count - self.lo
    if self.n < 1:
      raise ValueError(f"tfds:{name}:{split} has {self.total} examples < {process_count} processes")
    self.block_size = int(block_size)

  def _read(self, split: str):
    try:
      return self.builder.as_dataset(
        split=split, decoders={self.key: tfds.decode.SkipDecoding()}, shuffle_files=False
      )
    except Exception as e:  # noqa: BLE001 - not prepared, unknown split, unreadable files
      where = self.data_dir or "the default TFDS data dir (~/tensorflow_datasets)"
      if not self.builder.is_prepared():
        raise ValueError(
          f"tfds:{self.name} is not prepared in {where} and nothing is downloaded at run time: "
          f"prepare it once with `tfds build {self.name} --data_dir=<dir>` (or "
          f"`tfds.builder('{self.name}', data_dir=<dir>).download_and_prepare()`), then pass "
          f"--config.data.tfds_data_dir=<dir>"
        ) from None
      raise ValueError(f"tfds:{self.name}: cannot read split {split!r}: {_first_line(e)}") from None

  def _resolve_split(self) -> tuple[str, int, int]:
    """``(split name, first example, number of examples)`` of ``train`` or ``train[a:b]``."""
    info = self.builder.info.splits
    if "[" in self.split or "+" in self.split:
      try:
        parts = tfds.core.ReadInstruction.from_spec(self.split).to_absolute(info)
      except Exception as e:  # noqa: BLE001 - unknown split, bad spec, sizes not known
        if not self.builder.is_prepared():
          self._read(self.split)  # the "not prepared" error, if that is the problem
        raise ValueError(
          f"tfds:{self.name}: cannot use split {self.split!r}: {_first_line(e)}"
        ) from None
      if len(parts) != 1:
        raise ValueError(f"tfds:{self.name}: use one split or one slice of it, not {self.split!r}")
      a = parts[0]  # None stands for the start / the end of the split
      start = a.from_ or 0
      stop = info[a.splitname].num_examples if a.to is None else a.to
      return a.splitname, int(start), int(stop - start)
    if self.split in info and info[self.split].num_examples:
      return self.split, 0, int(info[self.split].num_examples)
    ds = self._read(self.split)  # split info unknown (e.g. mocked): ask the dataset
    n = int(ds.cardinality())
    return self.split, 0, (n if n >= 0 else sum(1 for _ in ds))

  @property
  def num_items(self) -> int:
    return self.n

  def read_block(self, start: int, stop: int) -> tuple[list[bytes], np.ndarray]:
    """Encoded images and labels (-1 without labels) of examples ``[start, stop)`` of the base
    split (``stop - start`` of them)."""
    key, lk = self.key, self.label_key

    def pick(ex):
      return ex[key], (ex[lk] if lk else tf.constant(-1, tf.int64))

    ds = self._read(f"{self.base}[{start}:{stop}]").map(pick)
    out = list(ds.repeat().take(stop - start).as_numpy_iterator())
    if len(out) != stop - start:
      raise ValueError(f"tfds:{self.name}:{self.base}[{start}:{stop}] yielded {len(out)} examples")
    return [b for b, _ in out], np.array([y for _, y in out], np.int64).reshape(-1)

  def stream(self, start_q: int, seed_u: int, shuffle: bool):
    """Yield ``(q, encoded image, example index, label)`` for positions ``q = start_q, ...``
    forever (label -1 without labels)."""
    n, bs, p = self.n, self.block_size, (self.process_index, self.process_count)
    nb = -(-n // bs)
    sizes = np.full(nb, bs, np.int64)
    sizes[-1] = n - bs * (nb - 1)
    q = int(start_q)
    while True:
      epoch, r = divmod(q, n)
      order = _perm(nb, seed_u, *p, epoch, 2) if shuffle else np.arange(nb)
      ends = np.cumsum(sizes[order])
      j = int(np.searchsorted(ends, r, side="right"))
      off = int(r - (ends[j] - sizes[order[j]]))
      for jj in range(j, nb):
        b = int(order[jj])
        a = self.lo + b * bs
        recs, labels = self.read_block(a, a + int(sizes[b]))
        inner = _perm(len(recs), seed_u, *p, epoch, 3, b) if shuffle else np.arange(len(recs))
        for t in range(off, len(recs)):
          i = int(inner[t])
          yield q, recs[i], a + i, int(labels[i])
          q += 1
        off = 0

  def load_id(self, data: bytes):
    return images.open_image(data)

  def whitening_images(self, n: int, prepare):
    """The first ``n`` examples of the split (the same on every process)."""
    m = min(n, self.total)
    blobs, _ = self.read_block(self.offset, self.offset + m)
    return whitening_sample(self, blobs, n, prepare, max(10 * n, 1000))

  def counts(self) -> dict:
    return {}

  def describe(self) -> str:
    return (
      f"tfds:{self.name}:{self.split} ({self.total} examples; {self.base}[{self.lo}:"
      f"{self.lo + self.n}] here, blocks of {self.block_size}, image feature {self.key!r}"
      + (f", label feature {self.label_key!r}" if self.label_key else "")
      + ")"
    )
