"""`make_pipeline`: data config + `InputSpec` -> the source -> one process's `Pipeline`."""

from __future__ import annotations

import numbers
import time

from livermore_brain.data import config as config_lib
from livermore_brain.data import spec as spec_lib
from livermore_brain.data.pipeline import Pipeline
from livermore_brain.data.spec import InputSpec

_LEGACY = ("channels", "global_batch", "seed", "process_index", "process_count", "workdir")


def make_pipeline(
  cfg,
  spec: InputSpec | None = None,  # num_frames >= 1: a `video.VideoPipeline` of clips
  *legacy,
  image_size: int | None = None,
  channels: int | None = None,
  global_batch: int | None = None,
  seed: int = 0,
  process_index: int = 0,
  process_count: int = 1,
  workdir: str | None = None,
) -> Pipeline:
  """Build the input pipeline of one process (guarantees: `livermore_brain.data.pipeline`).

  ``make_pipeline(cfg, spec, global_batch=B, seed=..., process_index=..., process_count=...,
  workdir=...)``, or the old square form ``make_pipeline(cfg, image_size=S, channels=C,
  global_batch=B, ...)`` (also positionally: ``make_pipeline(cfg, S, C, B, seed, ...)``).
  A field of ``spec`` the source lacks is one ValueError naming the sources that have it.
  """
  if isinstance(spec, numbers.Integral):  # the old positional form (cfg, S, C, B, ...)
    kw = dict(zip(_LEGACY, legacy))
    image_size, spec, legacy = int(spec), None, ()
    channels = kw.get("channels", channels)
    global_batch = kw.get("global_batch", global_batch)
    seed = kw.get("seed", seed)
    process_index = kw.get("process_index", process_index)
    process_count = kw.get("process_count", process_count)
    workdir = kw.get("workdir", workdir)
  if legacy:
    raise TypeError("make_pipeline takes cfg and spec positionally; pass the rest by keyword")
  if global_batch is None:
    raise TypeError("make_pipeline needs global_batch=")
  from livermore_brain.data import sources

  cfg = config_lib.resolve(cfg)
  if int(process_count) < 1 or not 0 <= int(process_index) < int(process_count):
    raise ValueError(f"process_index={process_index} must be in [0, process_count={process_count})")
  if int(global_batch) < 1 or int(global_batch) % int(process_count):
    raise ValueError(
      f"global_batch={global_batch} is not divisible by process_count={process_count}: each "
      f"process yields global_batch / process_count images; use a multiple of {process_count}"
    )
  spec = spec_lib.resolve(spec, image_size, channels)
  if spec.is_video:  # clips: their own sources and pipeline
    from livermore_brain.data import video

    return video.make_video_pipeline(
      cfg, spec, global_batch=int(global_batch), seed=seed, process_index=int(process_index),
      process_count=int(process_count),
    )  # fmt: skip
  if config_lib.parse_source(cfg.source)[0] in ("moving_mnist", "video_folder"):
    raise ValueError(
      f"data.source={cfg.source!r} holds clips, but the task reads images; image sources: "
      f"{config_lib.SOURCE_FORMS}"
    )
  h, w, _ = spec.image_shape
  if min(h, w) < 2 or (cfg.whiten and min(h, w) < int(cfg.whitening_patch)):
    raise ValueError(
      f"image size {h}x{w} is too small (whitening patch {cfg.whitening_patch}); use a larger "
      f"image, --config.data.whitening_patch or --config.data.whiten=False"
    )
  pi, pc = int(process_index), int(process_count)
  src = sources.from_config(cfg, pi, pc, workdir)
  spec_lib.check_fields(spec, src, cfg.source)
  return Pipeline(
    cfg,
    src,
    spec,
    global_batch=global_batch,
    seed=seed,
    process_index=pi,
    process_count=pc,
    workdir=workdir,
  )


def measure_throughput(pipe: Pipeline, num_batches: int = 20, start_batch: int = 0) -> float:
  """Images per second this process's pipeline delivers (after one warm-up batch)."""
  it = pipe.iterate(start_batch=start_batch)
  next(it)
  t0 = time.perf_counter()
  for _ in range(int(num_batches)):
    next(it)
  return int(num_batches) * pipe.local_batch / (time.perf_counter() - t0)
