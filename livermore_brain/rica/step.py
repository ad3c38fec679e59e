"""The jitted, sharded training step (one per pipeline stage) and the forward-copy sync.

For every *active* layer ``i`` the step evaluates the layer's RICA cost on its input map, takes an
optax update, and projects the filters back onto unit norm. Layer ``i``'s input map is produced
from the images by the *forward copies* of layers ``0..i-1`` under ``stop_gradient``: no gradient
ever crosses a layer (greedy training). Which layers are active is static, so each pipeline stage
compiles once.

Shardings: the state keeps its own (`state.state_shardings`), the batch is split over ``data``;
patches are constrained to (``locations`` -> model, ``batch`` -> data), so every untied location's
matmuls run where its parameters live. Each layer's normalized output map is constrained to be
replicated over ``model`` (split over ``data`` by batch): the one inter-layer all-gather, after
which both the next layer's cost and its forward copy extract their patches locally (left to
itself the partitioner gathered the map once per consumer). The state is donated.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding

from livermore_brain import sharding as shd
from livermore_brain.layers import rica
from livermore_brain.models import brain
from livermore_brain.train.state import TrainState


def batch_sharding(mesh: Mesh, rules=shd.DEFAULT_RULES) -> NamedSharding:
  """Images ``(B, H, W, C)``: batch over ``data``."""
  return NamedSharding(mesh, shd.logical_to_spec(("batch", None, None, None), rules))


def train_step_fn(
  spec: brain.NetworkSpec,
  tx: optax.GradientTransformation,
  active: tuple[bool, ...],
  constrain=None,
  compute_dtype=jnp.float32,
  remat: bool = False,
):
  """Pure step ``(state, images) -> (state, metrics)`` for a fixed set of active layers."""
  top = max(i for i, a in enumerate(active) if a)

  def cost(params, x_map, i):
    return brain.layer_cost(params, x_map, spec, i, constrain)

  def step(state: TrainState, images: jax.Array):
    x = brain.images_to_map(images.astype(compute_dtype))
    if constrain is not None:
      x = constrain(x, (None, None, "batch", None))
    params, opt_state, metrics = list(state.params), list(state.opt_state), {}
    for i in range(top + 1):
      if active[i]:
        f = functools.partial(cost, i=i)
        f = jax.checkpoint(f) if remat else f
        (loss, terms), grads = jax.value_and_grad(f, has_aux=True)(params[i], x)
        updates, opt_state[i] = tx.update(grads, opt_state[i], params[i])
        new = optax.apply_updates(params[i], updates)
        params[i] = dict(new, w=rica.project(new["w"]))
        name = spec.layers[i].name
        metrics[f"{name}/loss"] = loss
        metrics[f"{name}/reconstruction"] = terms["reconstruction"]
        metrics[f"{name}/sparsity"] = terms["sparsity"]
      if i < top:  # feed the next layer through the forward copy, no gradient across layers
        x = jax.lax.stop_gradient(brain.layer_output(state.fwd_params[i], x, spec, i, constrain))
        if constrain is not None:  # gather the map once, replicated over model (see above)
          x = constrain(x, (None, None, "batch", None))
    new_state = state.replace(step=state.step + 1, params=tuple(params), opt_state=tuple(opt_state))
    return new_state, metrics

  return step


def make_train_step(
  spec,
  tx,
  active,
  mesh: Mesh,
  shardings: TrainState,
  rules=shd.DEFAULT_RULES,
  compute_dtype=jnp.float32,
  remat=False,
):
  """``jax.jit`` of `train_step_fn` with explicit in/out shardings and the state donated."""
  fn = train_step_fn(spec, tx, active, shd.constrainer(mesh, rules), compute_dtype, remat)
  rep = shd.replicated(mesh)
  return jax.jit(
    fn,
    in_shardings=(shardings, batch_sharding(mesh, rules)),
    out_shardings=(shardings, rep),
    donate_argnums=(0,),
  )


def make_sync(shardings: TrainState, which: tuple[bool, ...]):
  """Jitted ``state -> state`` copying ``params[i]`` into ``fwd_params[i]`` where ``which[i]``."""

  def sync(state: TrainState) -> TrainState:
    fwd = tuple(
      jax.tree.map(jnp.copy, state.params[i]) if which[i] else state.fwd_params[i]
      for i in range(len(state.fwd_params))
    )
    return state.replace(fwd_params=fwd)

  return jax.jit(sync, in_shardings=(shardings,), out_shardings=shardings, donate_argnums=(0,))
