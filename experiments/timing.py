"""The timers `experiments.benchmark` measures with, each usable alone: the matmul ceiling, a
memory-stream bandwidth, the training step of any family's task (`step_timer`, `time_step`) and,
for RICA, the step's parts alone (`breakdown_timers`: matmuls, patch gathers, optimizer update).
A timer returns ``(wall seconds, CPU seconds)`` of one measurement (median of its repeats)."""

from __future__ import annotations

import time


def median(xs):
  xs = sorted(xs)
  n = len(xs)
  return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def _timer(f, *args, repeats: int = 10):
  """Compile and warm ``f(*args)``; returns a function timing ``repeats`` calls: ``(wall, cpu)``
  medians in seconds, ``cpu`` this process's CPU time (all its threads; on a shared machine
  wall time also counts the waits for a core, CPU time does not)."""
  import jax

  jax.block_until_ready(f(*args))

  def run() -> tuple[float, float]:
    times, cpu = [], []
    for _ in range(repeats):
      t, c = time.perf_counter(), time.process_time()
      jax.block_until_ready(f(*args))
      times.append(time.perf_counter() - t)
      cpu.append(time.process_time() - c)
    return median(times), median(cpu)

  return run


def ceiling_timer(n: int, repeats: int):
  """Timer of a jitted float32 ``(n, n) @ (n, n)``: returns ``dict(n, seconds, gflops)``."""
  import jax
  import jax.numpy as jnp

  ka, kb = jax.random.split(jax.random.key(0))
  a = jax.random.normal(ka, (n, n), jnp.float32)
  b = jax.random.normal(kb, (n, n), jnp.float32)
  run = _timer(jax.jit(lambda a, b: a @ b), a, b, repeats=max(1, repeats))

  def measure() -> dict:
    med, cpu = run()
    return dict(n=n, seconds=med, cpu_seconds=cpu, gflops=2 * n**3 / med / 1e9)

  return measure


def matmul_ceiling(n: int, repeats: int) -> dict:
  """GFLOP/s of a jitted float32 ``(n, n) @ (n, n)``, median over ``repeats`` calls."""
  return ceiling_timer(n, repeats)()


def bandwidth_timer(megabytes: int, repeats: int = 10):
  """Timer of a memory stream: ``x + 1`` over a float32 array of ``megabytes`` (read once,
  written once, far beyond the caches). Its bytes are the roofline's own count of that program
  (`roofline.op_costs`), so bandwidth and prediction use one accounting. Returns
  ``dict(bytes, seconds, gbps)``."""
  import jax
  import jax.numpy as jnp

  from livermore_brain import roofline

  x = jnp.zeros((megabytes * 2**20 // 4,), jnp.float32)
  f = jax.jit(lambda x: x + 1.0)
  nbytes = sum(c.bytes for c in roofline.op_costs(f.lower(x).compile().as_text()))
  run = _timer(f, x, repeats=repeats)

  def measure() -> dict:
    med, cpu = run()
    return dict(bytes=nbytes, seconds=med, cpu_seconds=cpu, gbps=nbytes / med / 1e9)

  return measure


def cpu_device(ceiling_gflops: float, memory_gbps: float, devices: int = 1):
  """This machine as a roofline device: the measured matmul ceiling (for every FLOP: the vector
  units are the matmul units here) and the measured stream bandwidth, shared by the ``devices``
  CPU devices of the mesh (they run on the same cores and memory); collectives are copies in the
  same memory."""
  import jax

  from livermore_brain import roofline

  peak, bw = ceiling_gflops / 1e3 / devices, memory_gbps / devices
  return roofline.Device(f"measured {jax.default_backend()} / {devices}", peak, peak, bw,
                         link_gbps=bw, note="measured in this run")  # fmt: skip


def nonmatmul_bytes(costs) -> dict:
  """Bytes of the compiled program's ops without matmul FLOPs, per `planner.op_group` group and
  in ``total``: what no matmul kernel can absorb, the program's memory floor beside its matmuls
  (the matmuls' own fused elementwise work is not in it). A slice counts what it copies (read
  and written once), not its whole operand as the roofline's per-op bytes do (XLA's rule; RICA's
  patch bands are such slices: 3x fewer bytes than counted)."""
  from livermore_brain import planner

  out = {"total": 0.0}
  for c in costs:
    if not c.matmul_flops:
      g = planner.op_group(c)
      b = 2 * c.result_bytes if c.name.startswith("slice") else c.bytes
      out[g] = out.get(g, 0.0) + b
      out["total"] += b
  return out


def synthetic_batch(task, batch: int, num_classes: int | None = None, seed: int = 0) -> dict:
  """Host arrays for every numeric field of ``task``'s batch (`Task.abstract_batch`): standard
  normal float fields (images), integer fields (labels) uniform in ``range(num_classes)``."""
  import numpy as np

  rng = np.random.default_rng(seed)
  out = {}
  for k, a in task.abstract_batch(batch).items():
    if np.issubdtype(a.dtype, np.integer):
      if not num_classes:
        raise ValueError(f"the step reads integer field {k!r}; set config.model.num_classes")
      out[k] = rng.integers(0, int(num_classes), a.shape).astype(a.dtype)
    else:
      out[k] = rng.standard_normal(a.shape).astype(a.dtype)
  return out


def step_timer(config, steps: int, warmup: int, batch=None, task=None):
  """Compile the step the task of ``config`` trains with at `Task.plan_step` (RICA: every layer
  active; `families.make_task` + ``task.step_fn``, what training builds) and warm it up. Returns
  ``(info, measure, costs, collectives)``: the step's static facts (XLA's FLOP count, memory),
  a function timing ``steps`` steps (``dict(step_seconds, step_seconds_min, finite)``, median),
  and the compiled step's per-op costs and collectives for the roofline. ``batch``: host arrays
  for some of the step's fields (e.g. a real batch from the pipeline); the others are
  `synthetic_batch`. ``task``: ``families.make_task(config)``, built here if not given."""
  import jax
  import numpy as np
  from jax.sharding import NamedSharding

  from livermore_brain import distributed, families, hlo, planner, roofline
  from livermore_brain import sharding as shd

  task = task or families.make_task(config)
  mesh = shd.make_mesh(config.mesh)
  rules = shd.rules_from_config(config.get("rules"))
  b = int(config.batch_size)
  shardings = task.state_shardings(mesh, rules)
  step = task.plan_step()
  fn = task.step_fn(step, mesh, shardings, rules)
  state = task.init_state(jax.random.key(0), mesh, shardings)
  local = synthetic_batch(task, b, config.model.get("num_classes"))
  for k, v in (batch or {}).items():
    if k in local:
      local[k] = np.asarray(v, local[k].dtype).reshape(local[k].shape)
  axes = task.batch_axes()
  x = {
    k: distributed.global_batch(v, NamedSharding(mesh, shd.logical_to_spec(axes[k], rules)))
    for k, v in local.items()
  }
  t = time.perf_counter()
  compiled = fn.lower(state, x).compile()
  compile_s = time.perf_counter() - t
  analysis = planner.analyze(compiled, mesh)
  text = compiled.as_text()
  for _ in range(max(1, warmup)):
    state, m = compiled(state, x)
  jax.block_until_ready((state, m))
  flops = analysis["flops_per_device"] * mesh.size
  info = dict(
    family=task.family,
    planned_step=step,
    devices=mesh.size,
    mesh=dict(mesh.shape),
    batch=b,
    fields=sorted(x),
    compile_seconds=compile_s,
    flops_per_step=flops,
    flops_per_image=flops / b,
    temp_bytes=analysis["bytes_per_device"]["temporaries"],
    bytes_per_device=analysis["bytes_per_device"]["total"],
    xla_bytes_accessed=analysis["xla_cost"]["bytes_accessed"],
    matmul_flops_per_step=None,
  )
  if task.family == "rica":  # the matmuls the model needs (planner.matmul_flops), RICA only
    info["matmul_flops_per_step"] = planner.matmul_flops(task.spec, task.sched.active(step), b)

  def measure() -> dict:
    nonlocal state
    times, cpu = [], []
    for _ in range(steps):
      t, c = time.perf_counter(), time.process_time()
      state, m = compiled(state, x)
      jax.block_until_ready((state, m))
      times.append(time.perf_counter() - t)
      cpu.append(time.process_time() - c)
    finite = bool(all(np.isfinite(v) for v in jax.device_get(m).values()))
    return dict(step_seconds=median(times), step_seconds_min=min(times),
                step_cpu_seconds=median(cpu), finite=finite)  # fmt: skip

  return info, measure, roofline.op_costs(text), hlo.parse_collectives(text)


def step_rates(info: dict, med: float) -> dict:
  out = dict(images_per_sec=info["batch"] / med, achieved_gflops=info["flops_per_step"] / med / 1e9,
             matmul_gflops=None)  # fmt: skip
  if info["matmul_flops_per_step"]:
    out["matmul_gflops"] = info["matmul_flops_per_step"] / med / 1e9
  return out


def time_step(config, steps: int, warmup: int, batch=None, task=None) -> dict:
  """`step_timer` measured once: its facts, the median step and the rates."""
  info, measure, _, _ = step_timer(config, steps, warmup, batch, task)
  out = dict(info, **measure())
  out.update(step_rates(info, out["step_seconds"]))
  return out


def breakdown_timers(config, task=None, repeats: int = 10):
  """RICA only (``task``: the config's `RicaTask`, built if not given). The step's parts alone,
  same shapes: its per-location matmuls (encode, decode, decode input-gradient, two filter
  gradients per layer, forward-copy encodes), its patch gathers, and the optimizer update +
  projection (`rica.step.apply_gradients`, the step's own). Seconds (median) and, for the
  matmuls, FLOPs.

  The matmuls run on the config's mesh, their operands split as the step splits them
  (locations, or a dense layer's neurons, over ``model``; batch over ``data``): on a mesh of
  several devices this is what those products cost with no other work and no step-wide
  synchronization around them, an upper bound on what the step itself can reach. The gathers
  and the update run on one device. Returns ``(timers, info, costs)``: a timer per part (median
  seconds of ``repeats`` calls), the matmuls' FLOPs and devices, and the matmul program's per-op
  costs (its roofline)."""
  import jax
  import jax.numpy as jnp
  from jax.sharding import NamedSharding

  from livermore_brain import families, planner
  from livermore_brain import sharding as shd
  from livermore_brain.layers import geometry as geo
  from livermore_brain.models import brain
  from livermore_brain.rica import step as step_lib

  task = task or families.make_task(config)
  if task.family != "rica":
    raise ValueError(f"the matmul breakdown is RICA's; this config's family is {task.family!r}")
  spec, tx = task.spec, task.tx
  b = int(config.batch_size)
  n = spec.num_layers
  key = iter(jax.random.split(jax.random.key(1), 8 * n))
  rand = lambda shape: jax.random.normal(next(key), shape, jnp.float32)
  mats, maps = [], []
  mesh = shd.make_mesh(config.mesh)
  rules = shd.rules_from_config(config.get("rules"))
  put = lambda a, axes: jax.device_put(a, NamedSharding(mesh, shd.logical_to_spec(axes, rules)))
  for g, s in zip(spec.geometries, spec.layers):
    lp = g.padded_locations
    loc, k = ("dense", "neurons") if g.is_dense else ("locations", None)
    mats.append((
      put(rand((lp, b, g.dim)), (loc, "batch", None)),
      put(rand((lp, s.features, g.dim)), (loc, k, None)),
      put(rand((lp, b, s.features)), (loc, "batch", k)),
    ))  # fmt: skip
    # layer 1 reads the batch-major images (the step's `brain.images_to_map` transpose then
    # cancels against the gather's batch-major view), the others a spatial-major map
    maps.append(rand((b, g.in_h, g.in_w, g.in_c) if not maps else (g.in_h, g.in_w, b, g.in_c)))

  def matmuls(mats):
    out = []
    for i, (x, w, z) in enumerate(mats):
      out.append(jnp.einsum("lbd,lkd->lbk", x, w))  # encode
      out.append(jnp.einsum("lbk,lkd->lbd", z, w))  # decode
      out.append(jnp.einsum("lbd,lkd->lbk", x * 0.5, w))  # decode input-gradient
      out.append(jnp.einsum("lbk,lbd->lkd", z, x))  # filter gradient (decode)
      out.append(jnp.einsum("lbk,lbd->lkd", z * 0.5, x))  # filter gradient (encode)
      if i < n - 1:
        out.append(jnp.einsum("lbd,lkd->lbk", x, w * 0.5))  # forward copy
    return out

  params = brain.init(jax.random.key(2), spec)
  opt = tuple(tx.init(p) for p in params)

  def update(params, opt, grads):
    return [step_lib.apply_gradients(tx, p, o, g) for p, o, g in zip(params, opt, grads)]

  from livermore_brain import roofline

  mm = jax.jit(matmuls)
  timers = dict(
    matmul_seconds=_timer(mm, mats, repeats=repeats),
    patches_seconds=_timer(
      jax.jit(lambda ms: [
        geo.extract_patches(brain.images_to_map(m) if i == 0 else m, g)
        for i, (m, g) in enumerate(zip(ms, spec.geometries))
      ]), maps,
      repeats=repeats,
    ),
    update_seconds=_timer(jax.jit(update), params, opt, params, repeats=repeats),
  )  # fmt: skip
  flops = planner.matmul_flops(spec, (True,) * n, b)
  costs = roofline.op_costs(mm.lower(mats).compile().as_text())
  return timers, dict(matmul_flops=flops, matmul_devices=mesh.size), costs


def breakdown(config, task=None, repeats: int = 10) -> dict:
  """`breakdown_timers` measured once: seconds of the matmuls, gathers and update alone."""
  timers, info, _ = breakdown_timers(config, task, repeats)
  out = {k: t()[0] for k, t in timers.items()}
  return dict(out, matmul_gflops=info["matmul_flops"] / out["matmul_seconds"] / 1e9,
              matmul_devices=info["matmul_devices"])  # fmt: skip
