"""What the image and clip pipelines share: which item fills each slot, and what was skipped.

No TensorFlow here: `pipeline.Pipeline` (images, tf.data) and `video.VideoPipeline` (clips,
threads) both build on `Slots`. The position arithmetic (local position ``q``, global example
``g``, per-epoch permutations) is described in `pipeline`'s docstring; so is the bad-data rule:
a bad item is replaced, for its slot only, by the next good item of the same permutation,
remembered so it is never read twice, and counted when its batch is yielded.
"""

from __future__ import annotations

import threading

import numpy as np

from livermore_brain.data import images

_METADATA = ("skipped_videos", "skipped_photos", "malformed_line")  # lines of a file, not items


def summarize_bad_counts(counts: dict, unit: str = "images") -> str:
  """One line, e.g.
  ``skipped 3 images (decode_error=2, missing_file=1); 1 skipped_videos; 2 malformed_line``."""
  bad = {k: v for k, v in sorted(counts.items()) if k not in _METADATA}
  n = sum(bad.values())
  parts = f"skipped {n} {unit}" + (
    f" ({', '.join(f'{k}={v}' for k, v in bad.items())})" if n else ""
  )
  extra = [f"{counts[k]} {k}" for k in _METADATA if counts.get(k)]
  return "; ".join([parts] + extra)


class Slots:
  """Slot bookkeeping of one process's pipeline over a random-access ``source``."""

  unit = "images"  # what the items are, in messages

  def __init__(self, cfg, source, fields, *, global_batch, seed, process_index, process_count):
    self.cfg, self.source, self.fields = cfg, source, tuple(fields)
    self.global_batch, self.seed = int(global_batch), int(seed)
    self.process_index, self.process_count = int(process_index), int(process_count)
    self.local_batch = self.global_batch // self.process_count
    self._seed_u = self.seed % (1 << 63)
    self._sequential = hasattr(source, "stream")  # tfds: blocks, not random access
    # Every process sees every item (see `pipeline`'s docstring): order by global example.
    self._global_order = bool(getattr(source, "global_order", False))
    # Fields the task reads are checked before the item is decoded: an item without a valid
    # label / with no tags is bad for this task, replaced and counted like an undecodable one.
    self._check_label = self.class_names is not None and "label" in self.fields
    self._num_labels = len(self.class_names) if self._check_label else 0
    self._tags = "tags" in self.fields
    self._lock = threading.Lock()
    self._perms: dict[int, np.ndarray] = {}
    self._bad: dict[int, str] = {}
    self._counts = dict(source.counts())

  @property
  def class_names(self) -> tuple[str, ...] | None:
    """The source's class names (``label`` indexes them), None if it has no labels."""
    return getattr(self.source, "class_names", None)

  @property
  def num_classes(self) -> int | None:
    names = self.class_names
    return None if names is None else len(names)

  def bad_counts(self) -> dict:
    """Cumulative skipped items by reason (this process; counted when their batch is yielded)."""
    with self._lock:
      return dict(self._counts)

  def bad_summary(self) -> str:
    return summarize_bad_counts(self.bad_counts(), self.unit)

  def _count_yielded(self, reasons: np.ndarray) -> None:
    """Count the replaced slots (nonzero `images.REASONS` codes) of a batch being yielded."""
    codes = reasons[reasons > 0]
    if codes.size:
      with self._lock:
        for c in codes:
          name = images.REASONS[int(c)]
          self._counts[name] = self._counts.get(name, 0) + 1

  def _rng(self, g: int, domain: int = 0):
    return np.random.default_rng([self._seed_u, domain, int(g)])

  def _example(self, q: int) -> int:
    """Global example index ``g`` of local position ``q`` (see `pipeline`'s docstring)."""
    k, j = divmod(q, self.local_batch)
    return k * self.global_batch + self.process_index * self.local_batch + j

  def _perm(self, epoch: int) -> np.ndarray:
    with self._lock:
      p = self._perms.get(epoch)
      if p is None:
        n = self.source.num_items
        if self.cfg.shuffle:
          pi, pc = (0, 1) if self._global_order else (self.process_index, self.process_count)
          rng = np.random.default_rng([self._seed_u, 1, pi, pc, epoch])
          p = rng.permutation(np.arange(n, dtype=np.int32 if n < 2**31 else np.int64))
        else:
          p = np.arange(n)
        self._perms[epoch] = p
        for old in sorted(self._perms)[:-3]:
          del self._perms[old]
      return p

  def _label_reason(self, label) -> str | None:
    if label is None or label < 0:
      return "missing_label"
    return "bad_label" if label >= self._num_labels else None

  def _check_fields(self, item: int) -> None:
    """Raise `images.BadImage` if the item lacks a field the task reads: a label in
    ``[0, num_classes)``, non-empty tags."""
    reason = self._label_reason(self.source.label(item)) if self._check_label else None
    if reason is None and self._tags and not self.source.tags(item).strip():
      reason = "no_tags"
    if reason is not None:
      raise images.BadImage(reason)

  def _fill(self, q: int, load):
    """``(item, g, reason, loaded)`` of local position ``q``: the first item from ``q``'s place
    in its epoch's permutation whose fields check out and that ``load(item, g)`` accepts.
    ``reason`` is the first rejected item's (``""`` if none was); rejected items are remembered."""
    g = self._example(q)
    n = self.source.num_items
    epoch, pos = divmod(g if self._global_order else q, n)
    perm = self._perm(epoch)
    reason = ""
    for t in range(n):
      item = int(perm[(pos + t) % n])
      try:
        known = self._bad.get(item)
        if known is not None:
          raise images.BadImage(known)
        self._check_fields(item)
        return item, g, reason, load(item, g)
      except images.BadImage as e:
        with self._lock:
          self._bad[item] = e.reason
        reason = reason or e.reason
    with self._lock:
      histogram: dict[str, int] = {}
      for r in self._bad.values():
        histogram[r] = histogram.get(r, 0) + 1
    raise RuntimeError(
      f"every one of the {n} items of this process's shard is undecodable or lacks a field the "
      f"task reads "
      f"({summarize_bad_counts(histogram, self.unit)}): {self.source.describe()}"
    )
