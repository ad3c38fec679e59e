"""The tf.data input pipeline: deterministic, exactly resumable, multi-process, bad-data tolerant.

Positions. Process ``p`` of ``P`` yields local batches of ``b = B / P`` images; slot ``j`` of its
batch ``k`` is local position ``q = k b + j`` and global example ``g = k B + p b + j``.

- Sources that list every item on every process (``builtin``, ``folder``: a list of paths is
  cheap; ``mnist``, ``digits``: in memory) are *process-count invariant*: example ``g`` is item ``perm_e[g mod n]`` of all ``n``
  items, ``e = g div n`` the epoch and ``perm_e`` a permutation drawn from ``(seed, e)``; each
  process loads only the slots of its slice of the global batch. So global batch ``k`` is the
  same on 1 process or 16, and a job may be restarted with another process count.
- ``yfcc100m`` (each process indexes only its ``1/P`` of the 100M-line file) uses the process's
  shard of ``n`` items: position ``q`` is item ``perm_e[q mod n]``, ``e = q div n``, ``perm_e``
  drawn from ``(seed, e, p, P)``. Deterministic and resumable for a fixed ``P``.

Random crops, flips and color jitter use one generator per example seeded from ``(seed, g)``
(`stages`). So batch ``k`` is a pure function of ``(cfg, seed, k, p, P)``, and
``iterate(start_batch=k)`` starts tf.data at position ``k b`` without touching earlier batches.
(TFDS sources use permuted blocks instead: `tfds_source`.)

Fields. Batches hold exactly the `InputSpec`'s fields (``image`` of shape ``(H, W, C)``, H != W
allowed, and where the source has them ``label``, of the item actually used in the slot, and
``tags``, host-side bytes strings); `build.make_pipeline` rejects a field the source lacks.

Bad data. An undecodable item (missing / empty / not an image / truncated) is replaced, for that
slot only, by the next good item of the same epoch's permutation, so every batch is full, the
position arithmetic above still holds, and no valid image is dropped (it still appears in its own
slot). The slot's reason is counted when its batch is *yielded*, so `bad_counts` is exact.
Known-bad items are remembered and never read twice. If every item of the shard is bad the
pipeline stops with a clear error instead of spinning.
"""

from __future__ import annotations

import os

import numpy as np

from livermore_brain.data import images, order, stages, tf_ops
from livermore_brain.data import spec as spec_lib
from livermore_brain.data import whitening as whitening_lib
from livermore_brain.data.spec import InputSpec
from livermore_brain.data.tfenv import tf

_OP_ERROR = tf.errors.OpError
_WHITEN_DOMAIN = 7  # RNG domain of the crops the whitening is fitted on (not training examples)


class Pipeline(order.Slots):
  """Use `make_pipeline`. ``iterate(start_batch=k)`` yields a dict of the spec's fields."""

  def __init__(
    self,
    cfg,
    source,
    spec: InputSpec | None = None,
    *,
    image_size=None,
    channels=None,
    global_batch,
    seed,
    process_index,
    process_count,
    workdir=None,
  ):
    self.spec = spec = spec_lib.resolve(spec, image_size, channels)
    super().__init__(
      cfg,
      source,
      spec.fields,
      global_batch=global_batch,
      seed=seed,
      process_index=process_index,
      process_count=process_count,
    )
    self.height, self.width, self.channels = spec.image_shape
    self.image_size = self.height if self.height == self.width else (self.height, self.width)
    self.stages = stages.Stages(cfg, spec, source)
    self.crop = self.stages.crop
    self._labels = (
      self.class_names is not None and not self._sequential
    )  # TFDS streams carry theirs
    self._cache: dict[int, np.ndarray] = {}
    self._cache_bytes = 0
    self._cache_cap = int(cfg.cache_max_mb) << 20 if cfg.cache_decoded else 0
    self.reads = 0  # items fetched from the source (cache misses, prefetching included)
    self.whitening = self._whitening(workdir) if cfg.whiten else None

  # ---- description ----------------------------------------------------------------------------
  @property
  def image_shape(self) -> tuple[int, int, int]:
    return self.spec.image_shape

  @property
  def batches_per_block(self) -> int:
    return max(1, int(self.cfg.block_size) // self.global_batch)

  def describe(self) -> str:
    w = self.whitening
    white = f"ZCA-whitened ({w.patch}x{w.patch} filter)" if w is not None else "not whitened"
    fields = "" if self.fields == ("image",) else f"; fields {', '.join(self.fields)}"
    return (
      f"{self.source.describe()}; {self.stages.describe()}, {white}{fields}; batch "
      f"{self.global_batch} = {self.process_count} x {self.local_batch}, "
      f"process {self.process_index}, seed {self.seed}"
    )

  # ---- stage 1 (Python, inside tf.numpy_function) ---------------------------------------------
  def prepare(self, obj, g: int, domain: int = 0) -> np.ndarray:
    """Stages 1-3 of one image for global example ``g``: ``uint8 (H, W, C)``."""
    return self.stages(obj, self._rng(g, domain) if self.stages.random else None)

  def _augment(self, img: np.ndarray, g: int) -> np.ndarray:
    """Stages 2-3 of an image already cropped by a deterministic (center / resize) crop."""
    return self.stages.augment(img, self._rng(g)) if self.stages.augments else img

  def _item(self, item: int, g: int) -> np.ndarray:
    random_crop = self.crop == "random"
    cached = self._cache.get(item)
    if cached is not None:
      return self.prepare(cached, g) if random_crop else self._augment(cached, g)
    obj = self.source.load(item)
    with self._lock:
      self.reads += 1
    if not (self.source.cacheable and self._cache_bytes < self._cache_cap):
      return self.prepare(obj, g)
    if random_crop:  # keep a pyramid of the image; crop it anew for every example
      keep = images.pyramid(obj, min(self.height, self.width))
      out = self.prepare(keep, g)
    else:  # keep the deterministic crop
      keep = self.stages.geometry(obj, None)
      out = self._augment(keep, g)
    with self._lock:
      if item not in self._cache and self._cache_bytes < self._cache_cap:
        self._cache[item] = keep
        self._cache_bytes += keep.nbytes
    return out

  def _load_slot(self, q):
    item, g, reason, img = self._fill(int(q), self._item)
    label = self.source.label(item) if self._labels else -1
    tags = self.source.tags(item).encode() if self._tags else b""
    code = images.CODE[reason] if reason else 0
    gid = np.int64(self.source.global_id(item))
    return img, gid, np.int64(g), np.int8(code), np.int32(label), np.bytes_(tags)

  def _sequential_stream(self, start_q: int):
    """The source's ``(q, encoded, example, label)`` stream plus each slot's reason code. When the
    task reads labels, an example whose label is missing (< 0, e.g. TFDS's unlabeled -1) or
    outside the class list gives its slot, and only that slot, the next example of the stream
    that has a good one, with the bad one's reason (counted when yielded, as for the
    random-access sources). The good example still fills its own slot too, so slot ``q`` depends
    only on the stream from ``q`` on and resuming stays exact; nothing is buffered beyond a run of
    bad examples."""
    stream = self.source.stream(start_q, self._seed_u, bool(self.cfg.shuffle))
    if not self._check_label:
      for rec in stream:
        yield (*rec, 0)
      return
    pending = []  # (q, reason code) of the bad slots waiting for the next good example
    for q, data, example, label in stream:
      reason = self._label_reason(int(label))
      if reason is None:
        for bad_q, code in pending:
          yield bad_q, data, example, label, code
        pending.clear()
        yield q, data, example, label, 0
        continue
      pending.append((q, images.CODE[reason]))
      if len(pending) > self.source.num_items:  # a whole pass without one usable label
        raise RuntimeError(
          f"none of the {self.source.num_items} examples of this process's shard has a label in "
          f"[0, {self._num_labels}): {self.source.describe()}"
        )

  def _load_encoded(self, q, data, example, label, reason):
    g = self._example(int(q))
    with self._lock:
      self.reads += 1
    try:
      img = self.prepare(images.open_image(bytes(data)), g)
      reason = int(reason)
    except images.BadImage as e:  # prepared TFDS data: should not happen; a blank, counted slot
      img, reason = np.zeros(self.image_shape, np.uint8), images.CODE[e.reason]
    return img, np.int64(example), np.int64(g), np.int8(reason), np.int32(label), np.bytes_(b"")

  # ---- whitening ------------------------------------------------------------------------------
  def _whitening(self, workdir):
    cfg = self.cfg
    path = os.path.join(workdir, "whitening.npz") if workdir else None
    if path and os.path.exists(path):
      w = whitening_lib.Whitening.load(path)
      if w.channels != self.channels:
        raise ValueError(
          f"{path} whitens {w.channels}-channel images but the network takes {self.channels}: "
          f"use a fresh workdir or delete the file to refit"
        )
      return w
    eps, norm = float(cfg.normalize_eps), bool(cfg.normalize)
    stage4 = (lambda x: images.normalize(x, eps)) if norm else (lambda x: np.float32(x) / 255.0)
    sample = self.source.whitening_images(  # crops only: no flips / jitter in the statistics
      int(cfg.whitening_images),
      lambda obj, j: stage4(self.stages.geometry(obj, self._rng(j, _WHITEN_DOMAIN))),
    )
    w = whitening_lib.fit(
      sample, int(cfg.whitening_patch), int(cfg.whitening_samples), float(cfg.whitening_eps),
      self.seed,
    )  # fmt: skip
    w.meta.update(
      images=len(sample), height=self.height, width=self.width, crop=self.crop, normalize=norm
    )
    if path and self.process_index == 0:
      os.makedirs(workdir, exist_ok=True)
      w.save(path)
    return w

  # ---- tf.data --------------------------------------------------------------------------------
  def _postprocess_fn(self):
    """Stages 4-5 on a batch: normalize (or scale to [0, 1]), then whiten."""
    eps = float(self.cfg.normalize_eps)
    w = self.whitening
    whiten = None if w is None else tf_ops.whiten_fn(w.kernel, self.height, self.width)
    norm = bool(self.cfg.normalize)

    def post(ex):
      x = tf_ops.normalize(ex["image"], eps) if norm else tf_ops.scale(ex["image"])
      return dict(ex, image=x if whiten is None else whiten(x))

    return post

  def dataset(self, start_batch: int = 0):
    """The tf.data pipeline from local batch ``start_batch`` on (dict of batched tensors)."""
    lb = self.local_batch
    npc = (
      tf.data.AUTOTUNE if int(self.cfg.num_parallel_calls) < 0 else int(self.cfg.num_parallel_calls)
    )
    out_t = [tf.uint8, tf.int64, tf.int64, tf.int8, tf.int32, tf.string]

    def finish(img, item, g, reason, label, tags):
      img.set_shape(self.image_shape)
      for t in (item, g, reason, label, tags):
        t.set_shape(())
      return dict(image=img, item=item, example=g, reason=reason, label=label, tags=tags)

    if self._sequential:
      i64 = tf.TensorSpec((), tf.int64)
      sig = (i64, tf.TensorSpec((), tf.string), i64, i64, i64)
      ds = tf.data.Dataset.from_generator(
        lambda: self._sequential_stream(start_batch * lb), output_signature=sig
      )
      load = lambda *a: finish(*tf.numpy_function(self._load_encoded, list(a), out_t))
    else:
      ds = tf.data.Dataset.range(start_batch * lb, 1 << 62)
      load = lambda q: finish(*tf.numpy_function(self._load_slot, [q], out_t))
    ds = ds.map(load, num_parallel_calls=npc, deterministic=True)
    ds = ds.batch(lb, drop_remainder=True)
    ds = ds.map(self._postprocess_fn(), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.prefetch(tf.data.AUTOTUNE if int(self.cfg.prefetch) < 0 else int(self.cfg.prefetch))
    opts = tf.data.Options()
    opts.deterministic = True
    return ds.with_options(opts)

  def iterate(self, start_batch: int = 0, return_meta: bool = False):
    """Local batches ``start_batch, start_batch + 1, ...`` forever (epochs roll over).

    Each is a dict of exactly the spec's fields: ``image`` float32 ``(local_batch, H, W, C)``,
    ``label`` int32 ``(local_batch,)``, ``tags`` an object array of ``local_batch`` bytes
    strings. With ``return_meta`` also ``item`` (global id of the image actually used: index in
    the sorted list for builtin/folder, in the split for mnist/digits, byte offset of the
    metadata line for yfcc100m, example index for tfds), ``example`` (global example index) and
    ``reason`` (0, or the `images.REASONS` code of a replaced slot).
    """
    if int(start_batch) < 0:
      raise ValueError(f"start_batch must be >= 0, got {start_batch}")
    op_error = _OP_ERROR  # a local: module globals may be gone when a generator is closed at exit
    keys = self.fields
    try:
      for ex in self.dataset(int(start_batch)).as_numpy_iterator():
        self._count_yielded(ex["reason"])
        out = {f: ex[f] for f in keys}
        if return_meta:
          out.update(item=ex["item"], example=ex["example"], reason=ex["reason"])
        yield out
    except op_error as e:
      msg = e.message.strip().splitlines()
      raise RuntimeError(f"input pipeline failed: {msg[0] if msg else e}") from None
