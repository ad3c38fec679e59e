"""The RICA network as a `Task` of the generic loop: greedy, pipelined layer-wise training.

Reads the ``model``, ``optimizer``, ``pipeline``, ``compute_dtype`` and ``remat`` sections of an
experiment config (`experiments/configs/rica_yfcc.py`). One jitted step per pipeline stage
(`schedule.PipelineSchedule`); forward copies are synchronized before the steps the schedule
names; stage changes are logged; a first-layer filter grid is written at every checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from livermore_brain.data.spec import InputSpec
from livermore_brain.layers import geometry as geo
from livermore_brain.models import presets
from livermore_brain.rica import schedule
from livermore_brain.rica import state as state_lib
from livermore_brain.rica import step as step_lib
from livermore_brain.train import optim
from livermore_brain.train.task import Task


class RicaTask(Task):
  family = "rica"

  def __init__(self, config: ml_collections.ConfigDict):
    spec = presets.spec_from_config(config.model)
    self._setup(
      spec,
      optim.make_optimizer(config.optimizer),
      schedule.PipelineSchedule.from_config(
        spec.num_layers, config.pipeline, int(config.batch_size), int(config.data.block_size)
      ),
      config.get("compute_dtype", "float32"),
      config.get("remat", False),
    )

  @classmethod
  def from_parts(cls, spec, tx, sched=None, compute_dtype="float32", remat=False) -> RicaTask:
    """A task from a network spec and an optimizer, without an experiment config (the planner's
    way in); the default schedule adds one layer per step (stage ``k`` at step ``k - 1``)."""
    task = cls.__new__(cls)
    sched = sched or schedule.PipelineSchedule(spec.num_layers, 1, 1)
    task._setup(spec, tx, sched, compute_dtype, remat)
    return task

  def _setup(self, spec, tx, sched, compute_dtype, remat) -> None:
    self.spec = spec
    self.input_spec = InputSpec(tuple(spec.input_shape))
    self.tx = tx
    self.sched = sched
    self.compute_dtype = jnp.dtype(compute_dtype)
    self.remat = bool(remat)
    self._steps: dict[tuple, Callable] = {}
    self._syncs: dict[tuple, Callable] = {}
    self._stage: int | None = None

  def describe(self) -> str:
    return self.spec.summary()

  def abstract_state(self):
    return state_lib.abstract_state(self.spec, self.tx)

  def state_shardings(self, mesh: Mesh, rules):
    shardings = state_lib.state_shardings(mesh, self.spec, self.tx, rules)
    state_lib.check_shardable(mesh, self.spec, self.tx, shardings)
    return shardings

  def init_state(self, key, mesh: Mesh, shardings):
    return state_lib.create_sharded_state(key, self.spec, self.tx, mesh, shardings)

  def before_step(self, state, step: int, log):
    stage, names = self.sched.stage(step), [s.name for s in self.spec.layers]
    if self._stage is None:
      active = [n for n, a in zip(names, self.sched.active(step)) if a]
      log(f"stage {stage}: layers {', '.join(active)} training from step {step}")
    elif stage != self._stage:
      log(
        f"stage {stage}: {names[stage - 1]} starts training at step {step} (forward copy of "
        f"{names[stage - 2]} synced every {self.sched.sync_every} steps)"
      )
    self._stage = stage
    which = self.sched.sync_at(step)
    if any(which):
      if which not in self._syncs:  # the state's own shardings, kept by the copy
        shardings = jax.tree.map(lambda x: x.sharding, state)
        self._syncs[which] = step_lib.make_sync(shardings, which)
      state = self._syncs[which](state)
    return state

  def step_fn(self, step: int, mesh: Mesh, shardings, rules):
    return self.stage_step(self.sched.active(step), mesh, shardings, rules)

  def stage_step(self, active: tuple[bool, ...], mesh: Mesh, shardings, rules):
    """The jitted step training the ``active`` layers (one per pipeline stage, cached)."""
    active = tuple(bool(a) for a in active)
    if active not in self._steps:
      self._steps[active] = step_lib.make_train_step(
        self.spec, self.tx, active, mesh, shardings, rules, self.compute_dtype, self.remat
      )
    return self._steps[active]

  def plan_step(self) -> int:
    """The first step of the last pipeline stage (every layer trains): the steady state."""
    return self.sched.start_step(self.spec.num_layers - 1)

  def meta(self, step: int) -> dict:
    return {"stage": self.sched.stage(max(step - 1, 0))}

  def on_checkpoint(self, state, workdir: str, pipeline) -> None:
    whitening = getattr(pipeline, "whitening", None)
    save_filters(
      os.path.join(workdir, "filters_layer1.png"),
      state.params[0]["w"],
      self.spec.geometries[0],
      undo=None if whitening is None else whitening.undo,
      title=f"layer1 filters, step {int(jax.device_get(state.step))}",
    )


def save_filters(path, w, g, *, undo=None, title=None, locations=16, per_location=8):
  """Filter grid of a layer's filters ``w`` ``(L_pad, K, D)`` (device or host) with geometry
  ``g``: the location ids ``locations``, or that many spread over the grid
  (`geometry.sample_locations`); only those rows are copied to the host, each row is labelled
  with its location id; ``undo`` maps filters to display space (e.g. undoing whitening).
  Returns the location ids shown."""
  from livermore_brain import viz

  locs = geo.sample_locations(g, locations) if np.ndim(locations) == 0 else np.asarray(locations)
  viz.filter_grid(
    np.asarray(jax.device_get(w[jnp.asarray(locs)])),
    g.field_h,
    g.field_w,
    g.in_c,
    path,
    max_filters=per_location,
    location_ids=locs,
    undo=undo,
    title=title,
  )
  return locs


def load_features(workdir: str, step: int | None = None, devices=None, mesh=None):
  """`rica.features.BrainFeatures` of the run in ``workdir`` (see `livermore_brain.families`)."""
  from livermore_brain.rica import features

  return features.BrainFeatures.load(workdir, step=step, devices=devices, mesh=mesh)
