"""Ahead-of-time planning: what one training step needs, read from XLA rather than guessed.

`plan` lowers and compiles the jitted training step (`train.step.make_train_step`) of the pipeline
stage with every layer active, from ``jax.ShapeDtypeStruct``s that carry the real shardings — so
nothing is allocated and any preset plans on fake CPU devices — and reports:

* ``bytes_per_device``: XLA's buffer assignment (``compiled.memory_analysis()``) of the partitioned
  program: arguments, outputs, temporaries, the outputs aliased to (donated) arguments, and the
  peak estimate ``arguments + outputs - aliased + temporaries``;
* ``flops``: ``compiled.cost_analysis()["flops"]``, which counts the *per-device* program (times
  the device count = the step), next to the matmul FLOPs the model needs;
* ``collectives``: every all-reduce / all-gather / reduce-scatter / all-to-all /
  collective-permute of the compiled HLO, attributed to the mesh axes its ``replica_groups`` (or
  ``source_target_pairs``) span (`livermore_brain.hlo`);
* ``untied``: each untied layer's own cost + update compiled in isolation, its input map given
  (replicated over ``model``, as the full step provides it after gathering the previous layer's
  output), to show that its locations train without model-axis traffic beyond scalars.

The CPU compiler's buffer assignment stands in for the GPU's: sizes of arguments and outputs are
exact, temporaries are XLA's own estimate for this program. Collectives inside loops are counted
once (the RICA step has no loops).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding

from livermore_brain import sharding as shd
from livermore_brain.hlo import collective_axes, parse_collectives, summarize_collectives
from livermore_brain.layers import rica
from livermore_brain.models import brain
from livermore_brain.train import state as state_lib
from livermore_brain.train import step as step_lib

# ---------------------------------------------------------------------------------------------
# Compiling from abstract shapes.


def _abstract(tree, shardings):
  return jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings
  )


def analyze(compiled, mesh: Mesh, top: int = 6) -> dict:
  """Memory, FLOPs and collectives of one compiled (partitioned) program, per device (plus the
  ``top`` largest collectives and the JAX op each came from)."""
  mem = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  b = dict(
    arguments=int(mem.argument_size_in_bytes),
    outputs=int(mem.output_size_in_bytes),
    temporaries=int(mem.temp_size_in_bytes),
    aliased=int(mem.alias_size_in_bytes),
  )
  b["total"] = b["arguments"] + b["outputs"] - b["aliased"] + b["temporaries"]
  colls = parse_collectives(compiled.as_text())
  shape = dict(mesh.shape)
  largest = sorted(colls, key=lambda c: -c.bytes)[:top]
  return dict(
    bytes_per_device=b,
    flops_per_device=float(cost.get("flops", 0.0)),
    collectives=summarize_collectives(colls, shape),
    largest_collectives=[
      dict(
        op=c.op, axes="+".join(collective_axes(c, shape)) or "none", bytes=c.bytes, where=c.where
      )
      for c in largest
    ],
  )


def compile_step(spec, tx, active, mesh, batch, rules=shd.DEFAULT_RULES, compute_dtype=jnp.float32,
                 remat=False):  # fmt: skip
  """The jitted training step of one pipeline stage, compiled from abstract shapes."""
  shardings = state_lib.state_shardings(mesh, spec, tx, rules)
  state_lib.check_shardable(mesh, spec, tx, shardings)
  state = _abstract(state_lib.abstract_state(spec, tx), shardings)
  h, w, c = spec.input_shape
  images = jax.ShapeDtypeStruct(
    (batch, h, w, c), jnp.float32, sharding=step_lib.batch_sharding(mesh, rules)
  )
  fn = step_lib.make_train_step(
    spec, tx, tuple(active), mesh, shardings, rules, compute_dtype, remat
  )
  return fn.lower(state, images).compile()


def layer_update_fn(spec, tx, i: int, constrain, remat: bool = False):
  """Layer ``i``'s cost + optimizer update + projection given its input map (as in the step)."""

  def update(params, opt_state, x_map):
    f = lambda p: brain.layer_cost(p, x_map, spec, i, constrain)
    f = jax.checkpoint(f) if remat else f
    (loss, _), grads = jax.value_and_grad(f, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    new = optax.apply_updates(params, updates)
    return dict(new, w=rica.project(new["w"])), opt_state, loss

  return update


def compile_layer(spec, tx, i, mesh, batch, rules=shd.DEFAULT_RULES, compute_dtype=jnp.float32,
                  remat=False):  # fmt: skip
  """Layer ``i``'s own update, compiled in isolation; its input map is replicated over
  ``model`` and split over ``data`` by batch."""
  shardings = state_lib.state_shardings(mesh, spec, tx, rules)
  abstract = state_lib.abstract_state(spec, tx)
  p_sh, o_sh = shardings.params[i], shardings.opt_state[i]
  h, w, c = spec.input_shape if i == 0 else spec.output_shape(i - 1)
  x_sh = NamedSharding(mesh, shd.logical_to_spec((None, None, "batch", None), rules))
  x = jax.ShapeDtypeStruct((h, w, batch, c), compute_dtype, sharding=x_sh)
  fn = layer_update_fn(spec, tx, i, shd.constrainer(mesh, rules), remat)
  rep = shd.replicated(mesh)
  jitted = jax.jit(
    fn, in_shardings=(p_sh, o_sh, x_sh), out_shardings=(p_sh, o_sh, rep), donate_argnums=(0, 1)
  )
  lowered = jitted.lower(
    _abstract(abstract.params[i], p_sh), _abstract(abstract.opt_state[i], o_sh), x
  )
  return lowered.compile()


# ---------------------------------------------------------------------------------------------
# The plan.


def matmul_flops(spec: brain.NetworkSpec, active: Sequence[bool], batch: int) -> int:
  """Matmul FLOPs of one step as computed (padded locations included): a training layer runs
  encode, decode, the decode's input gradient and two filter gradients (5 matmuls of
  ``2 B L K D``); a layer feeding a higher active layer runs one more encode (its forward copy)."""
  top = max(i for i, a in enumerate(active) if a)
  total = 0
  for i, (g, s) in enumerate(zip(spec.geometries, spec.layers)):
    one = 2 * batch * g.padded_locations * s.features * g.dim
    total += (5 * one if active[i] else 0) + (one if i < top else 0)
  return total


def projection(flops_per_image: float, devices: int, tflops: float, utilization: float,
               images: float) -> dict:  # fmt: skip
  """Images/s and days for ``images`` at ``tflops`` per device and the given utilization."""
  rate = devices * tflops * 1e12 * utilization / flops_per_image if flops_per_image else 0.0
  days = images / rate / 86400 if rate else float("inf")
  return dict(tflops_per_device=tflops, utilization=utilization, images=images,
              images_per_sec=rate, days=days)  # fmt: skip


def plan(
  spec: brain.NetworkSpec,
  tx: optax.GradientTransformation,
  mesh: Mesh,
  batch: int,
  *,
  rules=shd.DEFAULT_RULES,
  compute_dtype=jnp.float32,
  remat: bool = False,
  stages: str = "last",
  isolate: bool = True,
  tflops: float = 100.0,
  utilization: float = 0.5,
  images: float = 1e8,
) -> dict:
  """Compile and analyze; returns a JSON-able dict (see the module docstring)."""
  n = spec.num_layers
  if batch % mesh.shape["data"]:
    raise ValueError(
      f"batch {batch} is not divisible by the mesh's data axis ({mesh.shape['data']})"
    )
  counts = spec.param_counts()
  stored = state_lib.tree_size(brain.abstract_params(spec))
  per_layer = {s.name: c for s, c in zip(spec.layers, counts)}
  out = dict(params=dict(total=sum(counts), per_layer=per_layer, stored=stored), devices=mesh.size,
             mesh=dict(mesh.shape), batch=batch, compute_dtype=jnp.dtype(compute_dtype).name,
             remat=bool(remat))  # fmt: skip
  stage_list = range(1, n + 1) if stages == "all" else [n]
  run = functools.partial(
    compile_step, spec, tx, mesh=mesh, batch=batch, rules=rules, compute_dtype=compute_dtype,
    remat=remat,
  )  # fmt: skip
  out["stages"] = []
  for k in stage_list:
    active = tuple(i < k for i in range(n))
    t = time.perf_counter()
    a = analyze(run(active), mesh)
    a.update(
      stage=k,
      active=[s.name for s, on in zip(spec.layers, active) if on],
      compile_seconds=round(time.perf_counter() - t, 2),
      flops_per_step=a["flops_per_device"] * mesh.size,
      matmul_flops_per_step=matmul_flops(spec, active, batch),
    )
    out["stages"].append(a)
  last = out["stages"][-1]
  for key in ("bytes_per_device", "flops_per_device", "flops_per_step", "matmul_flops_per_step",
              "collectives", "largest_collectives", "compile_seconds"):  # fmt: skip
    out[key] = last[key]
  out["untied"] = {}
  if isolate:
    for i, (g, s) in enumerate(zip(spec.geometries, spec.layers)):
      if g.is_dense:
        continue
      t = time.perf_counter()
      a = analyze(compile_layer(spec, tx, i, mesh, batch, rules, compute_dtype, remat), mesh)
      model = a["collectives"].get("model", {})
      a.update(
        compile_seconds=round(time.perf_counter() - t, 2),
        model_nonscalar_collectives=sum(
          v["nonscalar_count"] for k, v in a["collectives"].items() if "model" in k.split("+")
        ),
        model_collectives=model.get("count", 0),
      )
      out["untied"][s.name] = a
  out["projection"] = projection(out["flops_per_step"] / batch, mesh.size, tflops, utilization,
                                 images)  # fmt: skip
  return out
