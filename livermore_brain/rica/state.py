"""`TrainState`: everything a run needs to continue, as one pytree (no functions inside).

``step`` is also the data position: batch ``step`` of the deterministic input stream is the next
one to train on, so a restored state continues the same stream with nothing repeated or skipped.
``fwd_params`` are the pipeline's forward copies (`schedule.PipelineSchedule`).

Initialization is sharded from the start (as in big_vision / nanodo): ``jax.eval_shape`` gives the
abstract state, the logical axis rules give its shardings, and ``jax.jit(init, out_shardings=...)``
materializes every parameter and optimizer slot directly on the devices that own it.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from livermore_brain import sharding as shd
from livermore_brain.models import brain


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: tuple
  fwd_params: tuple
  opt_state: tuple


def init_state(
  key: jax.Array, spec: brain.NetworkSpec, tx: optax.GradientTransformation
) -> TrainState:
  params = brain.init(key, spec)
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    fwd_params=jax.tree.map(jnp.copy, params[:-1]),
    opt_state=tuple(tx.init(p) for p in params),
  )


def abstract_state(spec: brain.NetworkSpec, tx: optax.GradientTransformation) -> TrainState:
  """Shapes and dtypes of the state; allocates nothing."""
  return jax.eval_shape(lambda k: init_state(k, spec, tx), jax.random.key(0))


def state_shardings(
  mesh: Mesh, spec: brain.NetworkSpec, tx: optax.GradientTransformation, rules=shd.DEFAULT_RULES
) -> TrainState:
  """`NamedSharding` for every leaf: params by their logical axes, optimizer slots like the
  params they belong to (``optax.tree_map_params``), scalars replicated."""
  axes = brain.param_axes(spec)
  p_sh = shd.named_shardings(mesh, axes, rules)
  abstract = abstract_state(spec, tx)
  rep = shd.replicated(mesh)
  opt_sh = tuple(
    optax.tree_map_params(tx, lambda _, s: s, st, sh, transform_non_params=lambda _: rep)
    for st, sh in zip(abstract.opt_state, p_sh)
  )
  return TrainState(step=rep, params=p_sh, fwd_params=p_sh[:-1], opt_state=opt_sh)


def check_shardable(mesh: Mesh, spec: brain.NetworkSpec, tx, shardings: TrainState) -> None:
  """Clear error when the mesh cannot split the parameters (before anything is compiled)."""
  shd.check_divisible(mesh, abstract_state(spec, tx).params, shardings.params, what="params")


def create_sharded_state(
  key: jax.Array, spec: brain.NetworkSpec, tx, mesh: Mesh, shardings: TrainState
) -> TrainState:
  return jax.jit(lambda k: init_state(k, spec, tx), out_shardings=shardings)(key)


def tree_size(tree: Any) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(tree))
