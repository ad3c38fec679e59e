"""What the generic training loop (`loop.run`) needs from a model: the `Task` interface.

The loop owns everything that is not about the model — the mesh, the input pipeline, verified
Orbax checkpoints and exact resume, metrics, progress, signals, non-finite stops. A task owns the
model: its state pytree, how that state is sharded, and its jitted step. RICA's greedy pipeline is
one task (`rica_task.RicaTask`); the LDRD report's later systems (context prediction, GANs, ...)
are meant to be others.

Contract:

* the state is a pytree (e.g. a ``flax.struct.dataclass``) with a scalar integer ``step`` leaf,
  which the step increments: it is also the data position, so resume continues the same stream;
* ``step_fn(step, ...)`` returns a (cached) jitted ``(state, images) -> (state, metrics)`` with
  ``images`` ``float32 (B, H, W, C)`` split over ``data`` and ``metrics`` a flat dict of scalars
  named ``"<part>/<quantity>"`` (e.g. ``"layer1/loss"``); it may differ from step to step (RICA
  compiles one per pipeline stage) and should donate the state;
* everything else has a do-nothing default.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import jax
from jax.sharding import Mesh


class Task(abc.ABC):
  input_shape: tuple[int, int, int]  # (H, W, C) of the images the input pipeline must produce

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
    """The jitted step to run at ``step``."""

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
