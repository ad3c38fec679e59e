"""The training loop: config in, a trained, checkpointed run directory out.

`train(config, workdir)` works for any preset, mesh and process count:

1. mesh + logical rules -> shardings; the state is initialized sharded, or restored (verified)
   from ``<workdir>/checkpoints`` onto this mesh, whatever mesh saved it;
2. the input stream is resumed at batch ``state.step`` (deterministic, nothing repeated/skipped);
3. each step runs the jitted step of the current pipeline stage (`schedule.PipelineSchedule`),
   refreshing forward copies when the schedule says so;
4. metrics every ``log_every`` steps, async checkpoints every ``checkpoint_every`` steps plus a
   filter-grid PNG, a final checkpoint; SIGTERM/SIGINT save and return; a non-finite loss stops
   with `NonFiniteLossError`, never saving the broken state.
"""

from __future__ import annotations

import json
import os
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from livermore_brain import distributed
from livermore_brain import sharding as shd
from livermore_brain.models import presets
from livermore_brain.train import checkpoint as ckpt_lib
from livermore_brain.train import metrics as metrics_lib
from livermore_brain.train import optim, schedule
from livermore_brain.train import state as state_lib
from livermore_brain.train import step as step_lib


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


def _save_filters(path, state, spec, pipe, max_locations=16):
  """First-layer filter grid (a sample of locations), whitening undone for display."""
  from livermore_brain import viz

  g = spec.geometries[0]
  locs = np.linspace(0, g.num_locations - 1, min(max_locations, g.num_locations)).astype(int)
  w = np.asarray(jax.device_get(state.params[0]["w"][jnp.asarray(locs)]))
  undo = pipe.whitening.undo if getattr(pipe, "whitening", None) is not None else None
  return viz.filter_grid(
    w,
    g.field_h,
    g.field_w,
    g.in_c,
    path,
    undo=undo,
    title=f"layer1 filters, step {int(jax.device_get(state.step))}",
  )


def _log(msg: str) -> None:
  if distributed.is_main():
    print(msg, flush=True)


def train(config: ml_collections.ConfigDict, workdir: str, devices=None) -> dict:
  """Train (or resume) the run in ``workdir``; returns a summary dict.

  ``devices`` (default: all) lets a notebook or test run on a subset of the local devices.
  """
  from livermore_brain import data as data_lib

  workdir = check_workdir(workdir)
  spec = presets.spec_from_config(config.model)
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
  tx = optim.make_optimizer(config.optimizer)
  shardings = state_lib.state_shardings(mesh, spec, tx, rules)
  state_lib.check_shardable(mesh, spec, tx, shardings)
  sched = schedule.PipelineSchedule.from_config(
    spec.num_layers, config.pipeline, gb, int(config.data.block_size)
  )
  compute_dtype = jnp.dtype(config.get("compute_dtype", "float32"))
  _log(
    f"livermore-brain: preset {config.get('preset', '?')}, mesh data={n_data} x "
    f"model={mesh.shape['model']} over {mesh.size} {jax.devices()[0].platform} "
    f"device(s), {jax.process_count()} process(es)\n{spec.summary()}"
  )

  ckpt = ckpt_lib.Checkpointer(
    os.path.join(workdir, "checkpoints"), max_to_keep=int(config.keep_checkpoints)
  )
  abstract = ckpt_lib.abstract_with_shardings(state_lib.abstract_state(spec, tx), shardings)
  restored = ckpt.restore_latest_good(abstract)
  if restored is not None:
    state, meta = restored
    _log(
      f"resumed from {ckpt.directory}/{meta['step']} (images seen: "
      f"{meta.get('images_seen', meta['step'] * gb):,})"
    )
  else:
    state = state_lib.create_sharded_state(
      jax.random.key(int(config.seed)), spec, tx, mesh, shardings
    )
  start = int(jax.device_get(state.step))

  if distributed.is_main():
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=False))
  pipe = data_lib.make_pipeline(
    config.data,
    image_size=spec.input_shape[0],
    channels=spec.input_shape[2],
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
  bsh = step_lib.batch_sharding(mesh, rules)
  steps, syncs = {}, {}
  filters_png = os.path.join(workdir, "filters_layer1.png")
  last_saved = ckpt.latest_step()
  window: dict[str, list] = {}
  pending = None  # (step, device metrics): fetched one step late to keep the device busy
  stage = sched.stage(start) if start < total else None
  if start < total:
    _log(
      f"stage {stage}: layers {', '.join(s.name for s, a in zip(spec.layers, sched.active(start)) if a)} "
      f"training from step {start}"
    )

  def check(step_done: int, m) -> None:
    vals = jax.device_get(m)
    for k, v in vals.items():
      if not np.isfinite(v):
        layer = k.split("/")[0]
        raise NonFiniteLossError(
          f"non-finite {k.split('/')[1]} ({v}) in {layer} at step {step_done}; stopping. The "
          f"last good checkpoint is step {last_saved} in {ckpt.directory} (nothing newer was "
          f"saved). Lower --config.optimizer.learning_rate or check the input data."
        )
      window.setdefault(k, []).append(float(v))

  def save(step_done: int) -> None:
    nonlocal last_saved
    ckpt.save(
      step_done,
      state,
      meta={
        "step": step_done,
        "images_seen": step_done * gb,
        "stage": sched.stage(max(step_done - 1, 0)),
        "data": pipe.bad_counts(),
        "preset": config.get("preset", ""),
      },
    )
    last_saved = step_done
    if distributed.is_main():
      try:
        _save_filters(filters_png, state, spec, pipe)
      except Exception as e:  # a figure must never stop training
        print(f"WARNING: filter grid not written ({type(e).__name__}: {e})", flush=True)

  it = pipe.iterate(start_batch=start) if start < total else None
  step = start
  interrupted = None
  t_start = time.perf_counter()
  with _Signals() as signals:
    try:
      while step < total:
        active = sched.active(step)
        if sched.stage(step) != stage:
          stage = sched.stage(step)
          new = spec.layers[stage - 1].name
          _log(
            f"stage {stage}: {new} starts training at step {step} (forward copy of "
            f"{spec.layers[stage - 2].name} synced every {sched.sync_every} steps)"
          )
        which = sched.sync_at(step)
        if any(which):
          if which not in syncs:
            syncs[which] = step_lib.make_sync(shardings, which)
          state = syncs[which](state)
        if active not in steps:
          steps[active] = step_lib.make_train_step(
            spec,
            tx,
            active,
            mesh,
            shardings,
            rules,
            compute_dtype,
            bool(config.get("remat", False)),
          )
        images = distributed.global_batch(next(it)["image"], bsh)
        state, m = steps[active](state, images)
        if pending is not None:
          check(*pending)
        pending = (step + 1, m)
        step += 1
        if step % int(config.log_every) == 0 or step == total:
          check(*pending)
          pending = None
          row = {k: float(np.mean(v)) for k, v in window.items()}
          window.clear()
          rate = progress.rate(step)
          _log(progress.line(step, row))
          row.update(images_seen=step * gb, images_per_sec=rate, stage=sched.stage(step - 1))
          row.update({f"data/skipped/{k}": v for k, v in pipe.bad_counts().items()})
          writer.write(step, row)
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
  if start >= total and distributed.is_main() and not os.path.exists(filters_png):
    _save_filters(filters_png, state, spec, pipe)
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
  if interrupted:
    _log(
      f"received {interrupted}: saved checkpoint at step {step}; rerun the same command to resume"
    )
  if distributed.is_main():
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
  return summary
