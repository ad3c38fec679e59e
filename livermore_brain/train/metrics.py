"""Metrics: ``<workdir>/metrics.jsonl`` (one JSON object per line), TensorBoard event files, and
a console progress line. Only process 0 writes (pass ``enabled=False`` elsewhere)."""

from __future__ import annotations

import json
import math
import os
import time


class MetricsWriter:
  def __init__(self, workdir: str, enabled: bool = True, tensorboard: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      self._f = open(self.path, "a", buffering=1)
      if tensorboard:
        try:
          import tensorflow as tf

          tf.config.set_visible_devices([], "GPU")
          self._tb = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
        except Exception as e:  # TensorBoard is a convenience; metrics.jsonl is the record
          print(f"WARNING: TensorBoard events disabled ({type(e).__name__}: {e})", flush=True)

  def write(self, step: int, scalars: dict) -> None:
    if not self.enabled:
      return
    row = {"step": int(step)}
    for k, v in scalars.items():
      row[k] = (
        v
        if isinstance(v, (str, dict))
        else (float(v) if isinstance(v, float) or hasattr(v, "item") else v)
      )
    self._f.write(json.dumps(row, allow_nan=True) + "\n")
    if self._tb is not None:
      import tensorflow as tf

      with self._tb.as_default(step=int(step)):
        for k, v in row.items():
          if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
            tf.summary.scalar(k, v)

  def close(self) -> None:
    if self.enabled:
      self._f.close()
      if self._tb is not None:
        self._tb.flush()


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
      f"{k.split('/')[0]} {v:.4f}" for k, v in scalars.items() if k.endswith("/loss")
    )
    eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if math.isfinite(eta) else "--:--:--"
    return f"step {step:>7}/{self.total}  {rate:8.1f} img/s  ETA {eta_s}  {losses}"
