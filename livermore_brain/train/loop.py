"""The training loop, generic over any `task.Task`: config in, a checkpointed run directory out.

`run(task, config, workdir)` works for any task (`train.task.Task`), mesh and process count
(`livermore_brain.families.train(config, workdir)` picks the task from ``config.family``):

1. mesh + logical rules -> the task's shardings; the state is initialized sharded, or restored
   (verified) from ``<workdir>/checkpoints`` onto this mesh, whatever mesh saved it;
2. the input stream (the fields and image shape of ``task.input_spec``) is resumed at batch
   ``state.step`` (deterministic, nothing repeated/skipped);
3. each step runs ``task.before_step`` then the task's jitted step on the batch dict;
4. metrics every ``log_every`` steps, async checkpoints every ``checkpoint_every`` steps (then
   ``task.on_checkpoint``, e.g. a figure), ``task.evaluate`` every ``eval_every`` steps and at
   the end (logged as metrics), a final checkpoint; SIGTERM/SIGINT save and return; a
   non-finite metric stops with `NonFiniteLossError`, never saving the broken state.

Config fields read here: ``mesh``, ``rules``, ``batch_size``, ``seed``, ``num_steps``,
``log_every``, ``checkpoint_every``, ``keep_checkpoints``, ``tensorboard``, ``data`` (and
``preset``, ``eval_every``, ``distributed`` if present); the task reads the rest.
"""

from __future__ import annotations

import json
import os
import signal
import time

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding

from livermore_brain import distributed
from livermore_brain import sharding as shd
from livermore_brain.train import checkpoint as ckpt_lib
from livermore_brain.train import config_ranges
from livermore_brain.train.task import Task


class NonFiniteLossError(RuntimeError):
  pass


def check_workdir(workdir: str) -> str:
  workdir = os.path.abspath(os.path.expanduser(workdir))
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test_{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise ValueError(
      f"workdir {workdir} is not writable ({e.strerror}); pass --workdir=<a "
      f"directory you can write>"
    ) from None
  return workdir


class _Signals:
  """Turns SIGTERM/SIGINT into a flag the loop checks after each step."""

  def __init__(self):
    self.received = None
    self._old = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread (e.g. some notebook runners)
        pass
    return self

  def _handle(self, signum, frame):
    self.received = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)


def _log(msg: str) -> None:
  if distributed.is_main():
    print(msg, flush=True)


def run(task: Task, config: ml_collections.ConfigDict, workdir: str, devices=None) -> dict:
  """Train (or resume) ``task`` in ``workdir``; returns a summary dict.

  ``devices`` (default: all) lets a notebook or test run on a subset of the local devices.
  """
  config_ranges.check(config, task.config_ranges)  # (families.make_task checked it already)
  workdir = check_workdir(workdir)
  mesh = shd.make_mesh(config.mesh, devices)
  rules = shd.rules_from_config(config.get("rules"))
  n_data = mesh.shape["data"]
  gb = int(config.batch_size)
  if gb % n_data:
    raise ValueError(
      f"batch_size={gb} is not divisible by the mesh's data axis ({n_data}); "
      f"use a multiple of {n_data}"
    )
  if gb % jax.process_count():
    raise ValueError(f"batch_size={gb} is not divisible by the {jax.process_count()} processes")
  shardings = task.state_shardings(mesh, rules)
  _log(
    f"livermore-brain: preset {config.get('preset', '?')}, mesh data={n_data} x "
    f"model={mesh.shape['model']} over {mesh.size} {jax.devices()[0].platform} "
    f"device(s), {jax.process_count()} process(es)\n{task.describe()}".rstrip()
  )

  ckpt = ckpt_lib.Checkpointer(
    os.path.join(workdir, "checkpoints"), max_to_keep=int(config.keep_checkpoints)
  )
  abstract = ckpt_lib.abstract_with_shardings(task.abstract_state(), shardings)
  restored = ckpt.restore_latest_good(abstract, move_aside=True)  # broken steps: renamed
  if restored is not None:
    state, meta = restored
    _log(
      f"resumed from {ckpt.directory}/{meta['step']} (images seen: "
      f"{meta.get('images_seen', meta['step'] * gb):,})"
    )
  else:
    state = task.init_state(jax.random.key(int(config.seed)), mesh, shardings)
  start = int(jax.device_get(state.step))

  # TensorFlow (tf.data, clu's writers) is imported only now, after the checks above: a bad
  # flag fails in seconds, without paying TensorFlow's import.
  from livermore_brain import data as data_lib
  from livermore_brain.train import metrics as metrics_lib

  if distributed.is_main():
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=False))
  pipe = data_lib.make_pipeline(
    config.data,
    task.input_spec,
    global_batch=gb,
    seed=int(config.seed),
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    workdir=workdir,
  )
  _log(f"data: {pipe.describe()}")
  writer = metrics_lib.MetricsWriter(
    workdir, enabled=distributed.is_main(), tensorboard=bool(config.get("tensorboard", True))
  )
  total = int(config.num_steps)
  progress = metrics_lib.Progress(total, gb, start)
  from clu import periodic_actions  # after metrics_lib, which imports TensorFlow quietly

  # steps/s, uptime and the time spent in evaluation and checkpointing, to TensorBoard (clu)
  report = periodic_actions.ReportProgress(
    num_train_steps=total,
    writer=writer.tensorboard,
    every_steps=int(config.log_every),
    every_secs=None,
  )
  task.setup(mesh, rules, workdir, pipe)
  batch_axes = task.batch_axes()
  bsh = {k: NamedSharding(mesh, shd.logical_to_spec(a, rules)) for k, a in batch_axes.items()}
  eval_every = int(config.get("eval_every", 0) or 0)
  last_saved = ckpt.latest_step()
  window: dict[str, list] = {}
  pending = None  # (step, device metrics): fetched one step late to keep the device busy

  def check(step_done: int, m) -> None:
    vals = jax.device_get(m)
    for k, v in vals.items():
      if not np.isfinite(v):
        part, _, what = k.rpartition("/")
        raise NonFiniteLossError(
          f"non-finite {what} ({v}) in {part or 'the model'} at step {step_done}; stopping. The "
          f"last good checkpoint is step {last_saved} in {ckpt.directory} (nothing newer was "
          f"saved). Lower --config.optimizer.learning_rate or check the input data."
        )
      window.setdefault(k, []).append(float(v))

  def evaluate(step_done: int) -> None:
    t0 = time.perf_counter()
    with report.timed("eval"):
      row = task.evaluate(state, step_done)
    if row:
      row = {k: float(v) for k, v in row.items()}
      shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items())
      _log(f"eval at step {step_done}: {shown} ({time.perf_counter() - t0:.1f} s)")
      writer.write(step_done, row)

  def after_save() -> None:
    if distributed.is_main():
      try:
        task.on_checkpoint(state, workdir, pipe)
      except Exception as e:  # a figure must never stop training
        print(f"WARNING: checkpoint hook failed ({type(e).__name__}: {e})", flush=True)

  def save(step_done: int) -> None:
    nonlocal last_saved
    meta = {"step": step_done, "images_seen": step_done * gb, **task.meta(step_done)}
    meta.update(data=pipe.bad_counts(), preset=config.get("preset", ""))
    with report.timed("checkpoint", wait_jax_async_dispatch=False):
      ckpt.save(step_done, state, meta=meta)
    last_saved = step_done
    after_save()

  it = pipe.iterate(start_batch=start) if start < total else None
  step = start
  interrupted = None
  t_start = time.perf_counter()
  with _Signals() as signals:
    try:
      while step < total:
        state = task.before_step(state, step, _log)
        train_step = task.step_fn(step, mesh, shardings, rules)
        local = next(it)
        batch = {k: distributed.global_batch(local[k], bsh[k]) for k in batch_axes}
        state, m = train_step(state, batch)
        if pending is not None:
          check(*pending)
        pending = (step + 1, m)
        step += 1
        report(step)
        if step % int(config.log_every) == 0 or step == total:
          check(*pending)
          pending = None
          row = {k: float(np.mean(v)) for k, v in window.items()}
          window.clear()
          rate = progress.rate(step)
          _log(progress.line(step, row))
          row.update(images_seen=step * gb, images_per_sec=rate, **task.meta(step))
          row.update({f"data/skipped/{k}": v for k, v in pipe.bad_counts().items()})
          writer.write(step, row)
        if (eval_every and step % eval_every == 0) or step == total:
          if pending is not None:
            check(*pending)
            pending = None
          evaluate(step)
        if step % int(config.checkpoint_every) == 0 or step == total or signals.received:
          if pending is not None:
            check(*pending)
            pending = None
          save(step)
        if signals.received:
          interrupted = signals.received
          break
    finally:
      ckpt.wait()
      writer.close()
  if start >= total:
    after_save()  # nothing to train: still (re)write the task's figures
  ckpt.close()
  elapsed = time.perf_counter() - t_start
  summary = {
    "workdir": workdir,
    "start_step": start,
    "final_step": step,
    "interrupted": interrupted,
    "seconds": elapsed,
    "images_per_sec": (step - start) * gb / elapsed if elapsed > 0 else 0.0,
    "data": pipe.bad_counts(),
    "checkpoint": f"{ckpt.directory}/{last_saved}",
  }
  where = f" (process 0 of {jax.process_count()})" if jax.process_count() > 1 else ""
  _log(f"data{where}: {pipe.bad_summary()}")
  if interrupted:
    _log(
      f"received {interrupted}: saved checkpoint at step {step}; rerun the same command to resume"
    )
  if distributed.is_main():
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
  return summary
