"""Ahead-of-time planning: what one training step needs, read from XLA rather than guessed.

`plan_task` does it for any family: it lowers and compiles the task's own jitted step
(``task.step_fn(task.plan_step(), ...)``, the one training runs) from ``jax.ShapeDtypeStruct``s of
its state and batch that carry the real shardings — so nothing is allocated and any preset plans
on fake CPU devices. `plan` is RICA's richer plan (every pipeline stage, each untied layer alone,
the matmul FLOPs the model needs), compiled through `rica.task.RicaTask`'s step the same way.
Both report:

* ``bytes_per_device``: XLA's buffer assignment (``compiled.memory_analysis()``) of the partitioned
  program: arguments, outputs, temporaries, the outputs aliased to (donated) arguments, and the
  peak estimate ``arguments + outputs - aliased + temporaries``;
* ``flops``: ``compiled.cost_analysis()["flops"]``, which counts the *per-device* program (times
  the device count = the step; RICA: next to the matmul FLOPs the model needs);
* ``collectives``: every all-reduce / all-gather / reduce-scatter / all-to-all /
  collective-permute of the compiled HLO, attributed to the mesh axes its ``replica_groups`` (or
  ``source_target_pairs``) span (`livermore_brain.hlo`);
* ``xla_cost`` / ``op_totals`` / ``roofline``: XLA's FLOPs and bytes accessed, the same summed
  over the per-op costs of `livermore_brain.roofline`, and the step predicted on a device (each
  op's ``max(compute, memory)``, collectives at the device's link bandwidth, grouped by
  `op_group`); ``projection``: days from that prediction (a utilization derate only if asked);
* ``params``: the parameter count (RICA: per layer too, and as stored with padded locations);
* ``untied`` (RICA): each untied layer's own update (`rica.step.layer_update`, the step's) compiled
  alone, its input map given (replicated over ``model``, as the full step provides it after
  gathering the previous layer's output), to show that its locations train without model-axis
  traffic beyond scalars.

The CPU compiler's buffer assignment stands in for the GPU's: sizes of arguments and outputs are
exact, temporaries are XLA's own estimate for this program. Collectives inside loops are counted
once (the RICA step has no loops).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding

from livermore_brain import roofline
from livermore_brain import sharding as shd
from livermore_brain.hlo import collective_axes, parse_collectives, summarize_collectives
from livermore_brain.models import brain
from livermore_brain.rica import state as state_lib
from livermore_brain.rica import step as step_lib
from livermore_brain.rica.task import RicaTask

# ---------------------------------------------------------------------------------------------
# Compiling from abstract shapes.


def _abstract(tree, shardings):
  return jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings
  )


def op_group(c: roofline.OpCost) -> str:
  """The roofline breakdown's group of one op: the optimizer's (RICA names its update's scope,
  `rica.step.apply_gradients`), then anything with matmul FLOPs (with what XLA fused into it),
  gathers, collectives, the rest."""
  if "/optimizer/" in c.where:
    return "optimizer update + projection"
  if c.matmul_flops:
    return "matmuls (+ fused elementwise)"
  if "gather" in c.where or "gather" in c.name:
    return "gathers"
  if c.op.startswith(("all-", "reduce-scatter", "collective-")):
    return "collectives (local copies)"
  return "other"


def analyze(
  compiled, mesh: Mesh, top: int = 6, device: roofline.Device | None = None,
  utilization: float = 1.0,
) -> dict:  # fmt: skip
  """Memory, FLOPs and collectives of one compiled (partitioned) program, per device (plus the
  ``top`` largest collectives and the JAX op each came from); XLA's cost analysis (``xla_cost``:
  FLOPs, bytes accessed, transcendentals) and the per-op totals of `roofline.op_costs`
  (``op_totals``); with a ``device``, the ``roofline`` prediction of one step on it
  (`roofline.predict`, grouped by `op_group`)."""
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
  text = compiled.as_text()
  colls = parse_collectives(text)
  costs = roofline.op_costs(text)
  shape = dict(mesh.shape)
  largest = sorted(colls, key=lambda c: -c.bytes)[:top]
  out = dict(
    bytes_per_device=b,
    flops_per_device=float(cost.get("flops", 0.0)),
    xla_cost=dict(
      flops=float(cost.get("flops", 0.0)),
      bytes_accessed=float(cost.get("bytes accessed", 0.0)),
      transcendentals=float(cost.get("transcendentals", 0.0)),
    ),
    op_totals=dict(
      ops=len(costs),
      flops=sum(c.flops for c in costs),
      matmul_flops=sum(c.matmul_flops for c in costs),
      bytes=sum(c.bytes for c in costs),
    ),
    collectives=summarize_collectives(colls, shape),
    largest_collectives=[
      dict(
        op=c.op, axes="+".join(collective_axes(c, shape)) or "none", bytes=c.bytes, where=c.where
      )
      for c in largest
    ],
  )
  if device is not None:
    out["roofline"] = roofline.predict(
      costs, device, collectives=colls, utilization=utilization, group=op_group
    )
  return out


def tree_size(tree: Any) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(tree))


def _check_batch(mesh: Mesh, batch: int) -> None:
  if batch % mesh.shape["data"]:
    raise ValueError(
      f"batch {batch} is not divisible by the mesh's data axis ({mesh.shape['data']})"
    )


def abstract_inputs(task, mesh: Mesh, batch: int, rules=shd.DEFAULT_RULES):
  """``(state, batch, state_shardings)``: the task's state and a global batch of ``batch``
  examples (`Task.abstract_batch`, split by `Task.batch_axes`) as ``jax.ShapeDtypeStruct``s
  carrying their shardings. Allocates nothing."""
  _check_batch(mesh, batch)
  shardings = task.state_shardings(mesh, rules)  # raises a clear error if the mesh cannot split
  state = _abstract(task.abstract_state(), shardings)
  axes = task.batch_axes()
  x = {
    k: jax.ShapeDtypeStruct(
      a.shape, a.dtype, sharding=NamedSharding(mesh, shd.logical_to_spec(axes[k], rules))
    )
    for k, a in task.abstract_batch(batch).items()
  }
  return state, x, shardings


def compile_task(task, mesh: Mesh, batch: int, rules=shd.DEFAULT_RULES, step: int | None = None):
  """``task.step_fn(step)`` (default `Task.plan_step`) compiled from abstract inputs."""
  state, x, shardings = abstract_inputs(task, mesh, batch, rules)
  step = task.plan_step() if step is None else int(step)
  return task.step_fn(step, mesh, shardings, rules).lower(state, x).compile()


def compile_step(spec, tx, active, mesh, batch, rules=shd.DEFAULT_RULES, compute_dtype=jnp.float32,
                 remat=False):  # fmt: skip
  """RICA's training step of one pipeline stage (`RicaTask.stage_step`, the step training runs),
  compiled from abstract shapes."""
  task = RicaTask.from_parts(spec, tx, compute_dtype=compute_dtype, remat=remat)
  state, x, shardings = abstract_inputs(task, mesh, batch, rules)
  return task.stage_step(tuple(active), mesh, shardings, rules).lower(state, x).compile()


def compile_layer(spec, tx, i, mesh, batch, rules=shd.DEFAULT_RULES, compute_dtype=jnp.float32,
                  remat=False):  # fmt: skip
  """Layer ``i``'s own update (`rica.step.layer_update_fn`, the step's), compiled in isolation;
  its input map is replicated over ``model`` and split over ``data`` by batch."""
  shardings = state_lib.state_shardings(mesh, spec, tx, rules)
  abstract = state_lib.abstract_state(spec, tx)
  p_sh, o_sh = shardings.params[i], shardings.opt_state[i]
  h, w, c = spec.input_shape if i == 0 else spec.output_shape(i - 1)
  x_sh = NamedSharding(mesh, shd.logical_to_spec((None, None, "batch", None), rules))
  x = jax.ShapeDtypeStruct((h, w, batch, c), compute_dtype, sharding=x_sh)
  fn = step_lib.layer_update_fn(spec, tx, i, shd.constrainer(mesh, rules), remat)
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


def projection(step_seconds: float, batch: int, images: float) -> dict:
  """Images/s and days for ``images`` at one step of ``batch`` images per ``step_seconds`` (the
  roofline's prediction, derated by its utilization)."""
  return dict(step_seconds=step_seconds, **roofline.days(step_seconds, batch, images))


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
  device: roofline.Device | None = None,
  utilization: float = 1.0,
  images: float = 1e8,
) -> dict:
  """Compile and analyze; returns a JSON-able dict (see the module docstring). ``device``
  (default: an H100 at the compute dtype's precision, `roofline.gpu`) is what each stage's
  roofline and the projection are predicted for; ``utilization`` an optional derate."""
  device = device or roofline.gpu("h100", roofline.precision_for(jnp.dtype(compute_dtype).name))
  n = spec.num_layers
  _check_batch(mesh, batch)
  counts = spec.param_counts()
  stored = tree_size(brain.abstract_params(spec))
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
    a = analyze(run(active), mesh, device=device, utilization=utilization)
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
              "xla_cost", "op_totals", "roofline", "collectives", "largest_collectives",
              "compile_seconds"):  # fmt: skip
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
  out["projection"] = projection(out["roofline"]["seconds"], batch, images)
  return out


def plan_task(
  task,
  mesh: Mesh,
  batch: int,
  *,
  rules=shd.DEFAULT_RULES,
  step: int | None = None,
  device: roofline.Device | None = None,
  utilization: float = 1.0,
  images: float = 1e8,
) -> dict:
  """Any family's plan: compile ``task.step_fn(step)`` (default `Task.plan_step`) from abstract
  inputs on ``mesh`` and analyze it; a JSON-able dict with ``family``, ``step``, ``params``
  (``total``: the leaves of ``state.params``), ``devices``, ``mesh``, ``batch``, the `analyze`
  fields, ``flops_per_step``, ``flops_per_image``, ``compile_seconds`` and ``projection``.

  ``flops_per_step`` is the per-device count times the devices: work a mesh axis replicates
  (e.g. a conv net's activations over ``model``, which splits only its widest layers) counts once
  per device — on a 2x4 mesh the tiny ResCeption step counts 4x its 1-device FLOPs.
  ``roofline`` / ``projection``: the step predicted on ``device`` (default an H100, TF32), with
  ``utilization`` as an optional derate (`roofline.predict`)."""
  device = device or roofline.gpu("h100")
  step = task.plan_step() if step is None else int(step)
  abstract = task.abstract_state()
  out = dict(family=task.family or type(task).__name__, step=step,
             params=dict(total=tree_size(getattr(abstract, "params", abstract))),
             devices=mesh.size, mesh=dict(mesh.shape), batch=batch)  # fmt: skip
  t = time.perf_counter()
  compiled = compile_task(task, mesh, batch, rules, step)
  out.update(
    analyze(compiled, mesh, device=device, utilization=utilization),
    compile_seconds=round(time.perf_counter() - t, 2),
  )
  out["flops_per_step"] = out["flops_per_device"] * mesh.size
  out["flops_per_image"] = out["flops_per_step"] / batch
  out["projection"] = projection(out["roofline"]["seconds"], batch, images)
  return out
