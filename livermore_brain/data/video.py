"""Clips: video sources and the pipeline that cuts them into fixed-length clips (``frames``).

A task asks for clips with ``InputSpec((H, W, C), fields=("frames", "label"), num_frames=T)``;
`build.make_pipeline` then returns a `VideoPipeline`, whose batches hold ``frames`` float32
``(b, T, H, W, C)`` (and ``label`` int32 ``(b,)`` where the source has classes), with the image
conventions of the platform: ``data.normalize`` = per-clip ``(x / 255 - mean) / (std + eps)``
(one mean and std over the clip's frames, pixels and channels, so motion is not normalized away),
else scaled to [0, 1]; ``data.flip`` flips a whole clip. Whitening and color jitter are image-only
(a clear error for clips). Sources (``data.source``, `clip_sources`): ``moving_mnist[:train|test|all]`` (offline default:
real MNIST digits moving with bounces, labeled by direction), ``video_folder:<dir>``,
``tfds:<video dataset>[:<split>]`` and ``yfcc100m:<metadata file>``.

Positions and determinism are those of `pipeline`: global example ``g`` is item
``perm_e[g mod n]`` of the epoch's permutation (per process shard for yfcc100m, permuted blocks
for tfds), and every random choice of the slot (clip start, flip) comes from ``(seed, g)``; so
batch ``k`` is a pure function of ``(cfg, seed, k, p, P)`` and resume is exact. Bad items (missing,
empty, undecodable file: ``missing_file`` / ``empty_file`` / ``decode_error``; no frame:
``empty_video``; fewer frames than the clip spans: ``too_short``) are replaced by the next good
item of the permutation and counted when their batch is yielded (``data/skipped/<reason>`` in
metrics.jsonl). A TFDS video shorter than the clip repeats its last frame (counted
``too_short``), since the sequential reader cannot skip without shifting later positions.
"""

from __future__ import annotations

import concurrent.futures
import os

import numpy as np

from livermore_brain.data import clip_sources, images, order


class VideoPipeline(order.Slots):
  """Use `build.make_pipeline` with a clip `InputSpec`; ``iterate(start_batch=k)`` yields dicts
  of the spec's fields (``frames`` float32 ``(b, T, H, W, C)``, ``label`` int32 ``(b,)``)."""

  whitening = None
  unit = "videos"
  _DOMAIN = 5  # RNG domain of a slot's clip start and flip

  def __init__(self, cfg, source, spec, *, global_batch, seed, process_index, process_count):
    if cfg.whiten or float(cfg.color_jitter) > 0:
      raise ValueError(
        "clips are not whitened or color-jittered: set --config.data.whiten=false and "
        "--config.data.color_jitter=0"
      )
    if cfg.crop == "random":
      raise ValueError("data.crop=random is image-only; clips use auto, center or resize")
    super().__init__(
      cfg,
      source,
      spec.fields,
      global_batch=global_batch,
      seed=seed,
      process_index=process_index,
      process_count=process_count,
    )
    self.spec = spec
    self.height, self.width, self.channels = spec.image_shape
    self.num_frames = spec.num_frames
    self.crop = "resize" if cfg.crop == "resize" else ("center" if cfg.crop == "center" else None)
    self.crop = self.crop or getattr(source, "default_crop", "center")
    workers = int(cfg.num_parallel_calls)
    self._workers = workers if workers > 0 else max(1, min(8, os.cpu_count() or 1))

  # ---- description ----------------------------------------------------------------------------
  @property
  def image_shape(self) -> tuple[int, int, int]:
    return self.spec.image_shape

  @property
  def clip_shape(self) -> tuple[int, int, int, int]:
    return self.spec.clip_shape

  def describe(self) -> str:
    t, h, w, c = self.clip_shape
    norm = "per-clip normalized" if self.cfg.normalize else "scaled to [0, 1]"
    flip = ", random flips" if self.cfg.flip else ""
    return (
      f"{self.source.describe()}; clips of {t} frames {h}x{w}x{c} ({self.crop}{flip}), {norm}; "
      f"fields {', '.join(self.fields)}; batch {self.global_batch} = {self.process_count} x "
      f"{self.local_batch}, process {self.process_index}, seed {self.seed}"
    )

  # ---- one slot -------------------------------------------------------------------------------
  def _finish(self, clip: np.ndarray, rng) -> np.ndarray:
    flip = bool(self.cfg.flip) and rng.random() < 0.5
    if flip:
      clip = clip[:, :, ::-1]
    x = clip.astype(np.float32) / np.float32(255.0)
    if self.cfg.normalize:
      x = (x - x.mean()) / (x.std() + np.float32(self.cfg.normalize_eps))
    return np.ascontiguousarray(x, np.float32)

  def _clip(self, item: int, g: int) -> np.ndarray:
    rng = self._rng(g, self._DOMAIN)
    clip = self.source.clip(item, *self.clip_shape, rng.random())
    return self._finish(clip, rng)

  def _slot(self, q: int):
    """``(frames, item, g, reason, label)`` of local position ``q``."""
    item, g, reason, frames = self._fill(q, self._clip)
    label = self.source.label(item) if self.class_names is not None else -1
    return frames, self.source.global_id(item), g, reason, label

  def _stream_slot(self, rec):
    q, encoded, example, label = rec
    g = self._example(int(q))
    rng = self._rng(g, self._DOMAIN)
    clip, short = self.source.clip(encoded, *self.clip_shape, rng.random(), self.crop)
    return self._finish(clip, rng), int(example), g, "too_short" if short else "", int(label)

  # ---- batches --------------------------------------------------------------------------------
  def _batch(self, slots: list) -> dict:
    frames, item, example, reason, label = zip(*slots)
    return dict(
      frames=np.stack(frames),
      item=np.array(item, np.int64),
      example=np.array(example, np.int64),
      reason=np.array([images.CODE[r] if r else 0 for r in reason], np.int8),
      label=np.array(label, np.int32),
    )

  def iterate(self, start_batch: int = 0, return_meta: bool = False):
    """Local batches ``start_batch, start_batch + 1, ...`` forever (epochs roll over); with
    ``return_meta`` also ``item``, ``example`` and ``reason`` (as `pipeline.Pipeline.iterate`)."""
    if int(start_batch) < 0:
      raise ValueError(f"start_batch must be >= 0, got {start_batch}")
    lb, k = self.local_batch, int(start_batch)
    pool = concurrent.futures.ThreadPoolExecutor(self._workers)
    try:
      if self._sequential:
        stream = self.source.stream(k * lb, self._seed_u, bool(self.cfg.shuffle))

        def submit():
          return [pool.submit(self._stream_slot, next(stream)) for _ in range(lb)]
      else:

        def submit():
          nonlocal k
          futs = [pool.submit(self._slot, q) for q in range(k * lb, (k + 1) * lb)]
          k += 1
          return futs

      ahead = [submit(), submit()]  # two batches in flight
      while True:
        b = self._batch([f.result() for f in ahead.pop(0)])
        ahead.append(submit())
        self._count_yielded(b["reason"])
        out = {f: b[f] for f in self.fields}
        if return_meta:
          out.update(item=b["item"], example=b["example"], reason=b["reason"])
        yield out
    finally:
      try:
        pool.shutdown(wait=False, cancel_futures=True)
      except (AttributeError, TypeError):  # at interpreter exit module globals may be gone
        pass


def make_video_pipeline(
  cfg, spec, *, global_batch, seed=0, process_index=0, process_count=1
) -> VideoPipeline:
  """`VideoPipeline` of one process (``cfg`` a resolved data config); called by `make_pipeline`."""
  from livermore_brain.data import spec as spec_lib

  src = clip_sources.from_config(cfg, process_index, process_count)
  spec_lib.check_fields(spec, src, cfg.source)
  return VideoPipeline(
    cfg,
    src,
    spec,
    global_batch=global_batch,
    seed=seed,
    process_index=process_index,
    process_count=process_count,
  )
