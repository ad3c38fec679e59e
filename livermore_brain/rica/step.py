"""The jitted, sharded training step (one per pipeline stage) and the forward-copy sync.

For every *active* layer ``i`` the step evaluates the layer's RICA cost on its input map, takes an
optax update, and projects the filters back onto unit norm (`layer_update`, which the planner also
compiles alone). Layer ``i``'s input map is produced
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

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from livermore_brain import sharding as shd
from livermore_brain.layers import rica
from livermore_brain.models import brain
from livermore_brain.rica.state import TrainState


def layer_update(
  spec: brain.NetworkSpec,
  tx: optax.GradientTransformation,
  i: int,
  params: dict,
  opt_state,
  x_map: jax.Array,
  constrain=None,
  remat: bool = False,
):
  """Layer ``i``'s training update given its input map ``x_map``: RICA cost -> value_and_grad ->
  ``tx.update`` -> ``apply_updates`` -> unit-norm projection of the filters. Returns
  ``(params, opt_state, loss, terms)``. The one update of the step, of the planner's
  isolated-layer compile (`layer_update_fn`) and (its `apply_gradients` part) of the benchmark's
  breakdown."""

  def cost(p, x):
    return brain.layer_cost(p, x, spec, i, constrain)

  f = jax.checkpoint(cost) if remat else cost
  (loss, terms), grads = jax.value_and_grad(f, has_aux=True)(params, x_map)
  params, opt_state = apply_gradients(tx, params, opt_state, grads)
  return params, opt_state, loss, terms


def apply_gradients(tx: optax.GradientTransformation, params: dict, opt_state, grads: dict):
  """``tx.update`` -> ``apply_updates`` -> filters projected back onto unit norm; returns
  ``(params, opt_state)``."""
  with jax.named_scope("optimizer"):  # the planner's roofline groups its ops by this name
    updates, opt_state = tx.update(grads, opt_state, params)
    new = optax.apply_updates(params, updates)
    return dict(new, w=rica.project(new["w"])), opt_state


def layer_update_fn(spec, tx, i: int, constrain=None, remat: bool = False):
  """``(params, opt_state, x_map) -> (params, opt_state, loss)``: `layer_update` of layer ``i``
  alone (the planner compiles it in isolation, `planner.compile_layer`)."""

  def update(params, opt_state, x_map):
    params, opt_state, loss, _ = layer_update(
      spec, tx, i, params, opt_state, x_map, constrain, remat
    )
    return params, opt_state, loss

  return update


def train_step_fn(
  spec: brain.NetworkSpec,
  tx: optax.GradientTransformation,
  active: tuple[bool, ...],
  constrain=None,
  compute_dtype=jnp.float32,
  remat: bool = False,
):
  """Pure step ``(state, batch) -> (state, metrics)`` for a fixed set of active layers (reads
  ``batch["image"]``)."""
  top = max(i for i, a in enumerate(active) if a)

  def step(state: TrainState, batch: dict):
    x = brain.images_to_map(batch["image"].astype(compute_dtype))
    if constrain is not None:
      x = constrain(x, (None, None, "batch", None))
    params, opt_state, metrics = list(state.params), list(state.opt_state), {}
    for i in range(top + 1):
      if active[i]:
        params[i], opt_state[i], loss, terms = layer_update(
          spec, tx, i, params[i], opt_state[i], x, constrain, remat
        )
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
    in_shardings=(shardings, {"image": shd.batch_sharding(mesh, rules)}),
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
