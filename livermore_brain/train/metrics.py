"""Metrics: ``<workdir>/metrics.jsonl`` (one JSON object per line) and TensorBoard event files,
through clu's metric-writer interface, and the console progress line (images/s, ETA, the step's
losses and accuracies). Only process 0 writes (pass ``enabled=False`` elsewhere). The loop adds
clu's ``periodic_actions.ReportProgress`` (steps/s, uptime and time per part to TensorBoard)."""

from __future__ import annotations

import json
import math
import os
import time

# isort: off
from livermore_brain.data import tfenv  # noqa: F401 - TF quietly and off the GPUs, before clu
from clu import metric_writers
# isort: on


class JsonlWriter(metric_writers.MetricWriter):
  """A clu `MetricWriter` appending one JSON object per ``write_scalars`` call to a file
  (``{"step": s, **scalars}``); values that are not numbers (e.g. strings) are kept as they are."""

  def __init__(self, path: str):
    self.path = path
    self._f = open(path, "a", buffering=1)

  def write_scalars(self, step: int, scalars) -> None:
    row = {"step": int(step)}
    for k, v in scalars.items():
      row[k] = float(v) if isinstance(v, float) or hasattr(v, "item") else v
    self._f.write(json.dumps(row, allow_nan=True) + "\n")

  def write_hparams(self, hparams) -> None:
    self.write_scalars(0, {"hparams": dict(hparams)})

  def write_summaries(self, step, values, metadata=None) -> None:
    pass

  def write_images(self, step, images) -> None:
    pass

  def write_videos(self, step, videos) -> None:
    pass

  def write_audios(self, step, audios, *, sample_rate) -> None:
    pass

  def write_texts(self, step, texts) -> None:
    pass

  def write_histograms(self, step, arrays, num_buckets=None) -> None:
    pass

  def flush(self) -> None:
    self._f.flush()

  def close(self) -> None:
    self._f.close()


class MetricsWriter:
  """``metrics.jsonl`` (every row, `JsonlWriter`) and TensorBoard event files (clu's
  ``SummaryWriter``; finite numbers only) on process 0; does nothing elsewhere."""

  def __init__(self, workdir: str, enabled: bool = True, tensorboard: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.tensorboard = None
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      self._jsonl = JsonlWriter(self.path)
      if tensorboard:
        try:
          self.tensorboard = metric_writers.SummaryWriter(os.path.join(workdir, "tensorboard"))
        except Exception as e:  # TensorBoard is a convenience; metrics.jsonl is the record
          print(f"WARNING: TensorBoard events disabled ({type(e).__name__}: {e})", flush=True)

  def write(self, step: int, scalars: dict) -> None:
    if not self.enabled:
      return
    self._jsonl.write_scalars(step, scalars)
    if self.tensorboard is not None:
      numbers = {
        k: float(v)
        for k, v in scalars.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
      }
      if numbers:
        self.tensorboard.write_scalars(int(step), numbers)

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      if self.tensorboard is not None:
        self.tensorboard.close()


def read_metrics(workdir: str) -> list[dict]:
  """All rows of ``<workdir>/metrics.jsonl`` (for notebooks and tests)."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


class Progress:
  """Images/s over a sliding window and an ETA, for the console line."""

  def __init__(self, total_steps: int, batch_size: int, start_step: int):
    self.total, self.batch = total_steps, batch_size
    self._t0, self._s0 = time.perf_counter(), start_step

  def rate(self, step: int) -> float:
    dt = time.perf_counter() - self._t0
    return (step - self._s0) * self.batch / dt if dt > 0 and step > self._s0 else 0.0

  def reset(self, step: int) -> None:
    self._t0, self._s0 = time.perf_counter(), step

  def line(self, step: int, scalars: dict) -> str:
    rate = self.rate(step)
    eta = (self.total - step) * self.batch / rate if rate > 0 else float("nan")
    losses = "  ".join(
      f"{k.split('/')[0]} {v:.4f}" if k.endswith("/loss") else f"{k} {v:.3f}"
      for k, v in scalars.items()
      if k.endswith("/loss") or k.endswith("/accuracy")
    )
    eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if math.isfinite(eta) else "--:--:--"
    return f"step {step:>7}/{self.total}  {rate:8.1f} img/s  ETA {eta_s}  {losses}"
