"""What the generic training loop (`loop.run`) needs from a model family: the `Task` interface.

The loop owns everything that is not about the model — the mesh, the input pipeline, verified
Orbax checkpoints and exact resume, metrics, progress, periodic evaluation, signals, non-finite
stops. A task owns the model: its state pytree, how that state is sharded, its jitted step, which
inputs it needs, how it is evaluated and which layers it exports as features. Each family (the
RICA brain, supervised ResCeption, ...) is one `Task` subclass; `livermore_brain.families` maps
config names to them.

Contract:

* the state is a pytree (e.g. a ``flax.struct.dataclass``) with a scalar integer ``step`` leaf,
  which the step increments: it is also the data position, so resume continues the same stream;
* ``input_spec`` says which batch fields the step reads (``image`` and, where the source has
  them, ``label``, ...) and the image shape ``(H, W, C)`` (non-square allowed); the data config
  of the experiment says how images are preprocessed (`livermore_brain.data.config`);
* ``step_fn(step, ...)`` returns a (cached) jitted ``(state, batch) -> (state, metrics)``:
  ``batch`` a dict of global arrays with the spec's numeric fields, split over ``data``
  (`batch_axes`), ``metrics`` a flat dict of scalars named ``"<part>/<quantity>"`` (e.g.
  ``"layer1/loss"``); it may differ from step to step (RICA compiles one per pipeline stage) and
  should donate the state;
* ``plan_step()`` names the step whose ``step_fn`` the planner (`planner.plan_task`) and the
  benchmark compile: one of training's steady state (default 0; RICA: every layer active);
  ``abstract_batch(b)`` the batch they feed it (shapes and dtypes of every `batch_axes` field);
* ``evaluate(state, step)`` (optional) returns scalar metrics (e.g. held-out accuracy); the loop
  calls it every ``config.eval_every`` steps and at the end, and logs them like step metrics;
* the family's module (beside its Task) offers ``load_features(workdir, ...)``: an
  `eval.extractor.FeatureExtractor` over the layers it exports, for analysis and the transfer
  table (`livermore_brain.families.load_features`);
* everything else has a do-nothing default.
"""

from __future__ import annotations

import abc
import types
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from livermore_brain import sharding as shd
from livermore_brain.data.spec import InputSpec

# Logical axes of the batch fields the loop can feed to a step (leading axis = the global batch).
BATCH_AXES = {
  "image": ("batch", None, None, None),
  "frames": ("batch", None, None, None, None),  # clips (B, T, H, W, C)
  "label": ("batch",),
}
# Their dtypes (``label``: the class index).
BATCH_DTYPES = {"image": np.float32, "frames": np.float32, "label": np.int32}


class Task(abc.ABC):
  family: str = ""  # the name `livermore_brain.families` knows this task by
  input_spec: InputSpec
  # Ranges of this family's own numeric config fields that `train.config_ranges.RULES` does not
  # already name ({"model.<field>": config_ranges.Range(lo=1)}); checked before training.
  config_ranges: Mapping = types.MappingProxyType({})

  @property
  def input_shape(self) -> tuple[int, int, int]:
    return tuple(self.input_spec.image_shape)

  @abc.abstractmethod
  def abstract_state(self) -> Any:
    """Shapes and dtypes of the state (``jax.eval_shape``): allocates nothing."""

  @abc.abstractmethod
  def state_shardings(self, mesh: Mesh, rules) -> Any:
    """A `NamedSharding` for every leaf of the state; raise ValueError if the mesh cannot split
    it (before anything is compiled)."""

  @abc.abstractmethod
  def init_state(self, key: jax.Array, mesh: Mesh, shardings: Any) -> Any:
    """The initial state, created directly sharded (``jax.jit(init, out_shardings=...)``)."""

  @abc.abstractmethod
  def step_fn(self, step: int, mesh: Mesh, shardings: Any, rules) -> Callable:
    """The jitted ``(state, batch) -> (state, metrics)`` step to run at ``step``."""

  def batch_axes(self) -> dict[str, tuple]:
    """Logical axes of every numeric batch field the step reads (host-only fields, e.g. the
    ``tags`` strings, are never sent to the devices)."""
    return {k: BATCH_AXES[k] for k in self.input_spec.fields if k in BATCH_AXES}

  def batch_shardings(self, mesh: Mesh, rules) -> dict:
    """`NamedSharding` of every `batch_axes` field under ``rules``."""
    return {
      k: NamedSharding(mesh, shd.logical_to_spec(a, rules)) for k, a in self.batch_axes().items()
    }

  def jit_step(self, train_step: Callable, mesh: Mesh, shardings, rules) -> Callable:
    """``train_step(state, batch) -> (state, metrics)`` jitted the platform's way: the state in
    and out with ``shardings`` (the input donated), the batch by `batch_shardings`, the metrics
    replicated."""
    return jax.jit(
      train_step,
      in_shardings=(shardings, self.batch_shardings(mesh, rules)),
      out_shardings=(shardings, shd.replicated(mesh)),
      donate_argnums=(0,),
    )

  def abstract_batch(self, batch: int) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes and dtypes of a global batch of ``batch`` examples, one per `batch_axes` field
    (``image`` float32 ``(batch, H, W, C)``, ``label`` int32 ``(batch,)``); no sharding."""
    trailing = {"image": self.input_shape, "label": ()}
    if self.input_spec.num_frames:
      trailing["frames"] = self.input_spec.clip_shape
    return {
      k: jax.ShapeDtypeStruct((batch, *trailing[k]), BATCH_DTYPES[k]) for k in self.batch_axes()
    }

  def plan_step(self) -> int:
    """The step whose `step_fn` the planner and the benchmark compile and measure: one of
    training's steady state (RICA: the first with every pipeline stage active)."""
    return 0

  def describe(self) -> str:
    """Printed once at start (e.g. a table of layers and parameter counts)."""
    return ""

  def before_step(self, state: Any, step: int, log: Callable[[str], None]) -> Any:
    """Called before every step (e.g. schedule changes); returns the state to train on."""
    return state

  def meta(self, step: int) -> dict:
    """Extra JSON-able fields for the checkpoint metadata and metrics rows at ``step``."""
    return {}

  def on_checkpoint(self, state: Any, workdir: str, pipeline: Any) -> None:
    """After each save, on process 0 only (e.g. write a figure). Errors are reported as
    warnings and never stop training."""
    return None

  def setup(self, mesh: Mesh, rules, workdir: str, pipeline: Any) -> None:
    """Called once by the loop before training (e.g. load a held-out set for `evaluate`)."""
    return None

  def evaluate(self, state: Any, step: int) -> dict[str, float]:
    """Scalar evaluation metrics (``"eval/<name>"``) of ``state``; ``{}`` if the task has none."""
    return {}
