r"""How close the training step comes to this machine's limit, measured in one run.

  python -m experiments.benchmark --config=experiments/configs/rica_yfcc.py:cpu
  python -m experiments.benchmark --config=experiments/configs/resception.py:cpu   # any family

1. The ceiling: a large float32 matmul (``--matmul_size``), median of ``--matmul_repeats``.
2. The training step the config's task trains with (``families.make_task(config)`` and
   ``task.step_fn(task.plan_step())``; RICA: the stage with every layer active, the steady state
   of the pipeline), compiled, warmed up, then timed one step at a time (median of ``--steps``
   >= 10): images/s, XLA's FLOP count of the compiled step, the achieved GFLOP/s and their
   fraction of the ceiling. It is fed the pipeline's first batch, or random data of the task's
   fields (labels in ``range(model.num_classes)``) when the data cannot be read here.
3. The input pipeline alone (`livermore_brain.data.measure_throughput`): images/s.
4. RICA only: the step's matmuls, patch gathers and optimizer update alone (`breakdown`), and
   with ``--also_optimizers=sgd,...`` the same step with those optimizers, in the same rounds
   against the same matmuls (what the update costs inside the step).

Prints a table and, as its last line, JSON with ``images_per_sec``, ``achieved_gflops``,
``ceiling_gflops``, ``fraction_of_ceiling`` and ``data_images_per_sec`` (plus details). The step
runs on the local devices and mesh of the config (``--config.mesh``); shapes come from the
config's preset, so a re-sized preset is measured as it is. Timings on a shared machine are only
as good as its load: the 1-minute load average is printed next to them.
"""

from __future__ import annotations

import json
import os
import time

from absl import flags
from ml_collections import config_flags

from experiments import common

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  os.path.join(os.path.dirname(__file__), "configs", "rica_yfcc.py"),
  "Config file with a preset, any family: experiments/configs/rica_yfcc.py:tiny|cpu|paper, "
  "experiments/configs/resception.py:tiny|cpu|imagenet.",
  lock_config=True,
)
_STEPS = flags.DEFINE_integer("steps", 20, "Timed training steps (median reported; >= 10).")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.")
_MATMUL = flags.DEFINE_integer("matmul_size", 3072, "N of the N x N x N float32 ceiling matmul.")
_REPEATS = flags.DEFINE_integer("matmul_repeats", 10, "Ceiling matmul repeats (median).")
_DATA = flags.DEFINE_integer("data_batches", 20, "Batches timed for the input pipeline alone.")
_SKIP_DATA = flags.DEFINE_bool("skip_data", False, "Do not measure the input pipeline.")
_ROUNDS = flags.DEFINE_integer(
  "rounds", 3, "Measure ceiling, bandwidth, step and its parts this many times, interleaved."
)
_BANDWIDTH_MB = flags.DEFINE_integer("bandwidth_mb", 256, "Array size of the bandwidth stream.")
_OPTIMIZERS = flags.DEFINE_list(
  "also_optimizers",
  [],
  "RICA: also time the step with these optimizers (e.g. sgd,momentum) in "
  "the same rounds, each against the same matmuls alone: what the update costs inside the step.",
)
_BREAKDOWN = flags.DEFINE_bool(
  "breakdown", True, "RICA: also time the step's matmuls, patch gathers and optimizer update alone."
)


def _median(xs):
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
    return _median(times), _median(cpu)

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
    return dict(step_seconds=_median(times), step_seconds_min=min(times),
                step_cpu_seconds=_median(cpu), finite=finite)  # fmt: skip

  return info, measure, roofline.op_costs(text), hlo.parse_collectives(text)


def _step_rates(info: dict, med: float) -> dict:
  out = dict(images_per_sec=info["batch"] / med, achieved_gflops=info["flops_per_step"] / med / 1e9,
             matmul_gflops=None)  # fmt: skip
  if info["matmul_flops_per_step"]:
    out["matmul_gflops"] = info["matmul_flops_per_step"] / med / 1e9
  return out


def time_step(config, steps: int, warmup: int, batch=None, task=None) -> dict:
  """`step_timer` measured once: its facts, the median step and the rates."""
  info, measure, _, _ = step_timer(config, steps, warmup, batch, task)
  out = dict(info, **measure())
  out.update(_step_rates(info, out["step_seconds"]))
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


def input_pipeline(config, task):
  """The config's input pipeline and its first batch (the step's fields), or ``(None, None,
  reason)`` when the data cannot be read here (e.g. a dataset not prepared on this machine)."""
  from livermore_brain import data as data_lib

  try:
    pipe = data_lib.make_pipeline(
      config.data, task.input_spec, global_batch=int(config.batch_size), seed=int(config.seed),
      process_index=0, process_count=1, workdir=None,
    )  # fmt: skip
    ex = next(pipe.iterate(0))
  except (ValueError, FileNotFoundError, ImportError, OSError) as e:
    return None, None, f"{type(e).__name__}: {e}".splitlines()[0]
  return pipe, {k: ex[k] for k in task.batch_axes() if k in ex}, None


_PARTS = ("matmul_seconds", "patches_seconds", "update_seconds", "matmul_cpu_seconds",
          "patches_cpu_seconds", "update_cpu_seconds")  # fmt: skip


def _spread(xs) -> dict:
  return dict(median=_median(xs), min=min(xs), max=max(xs), values=list(xs))


def _range(d: dict, scale: float = 1.0, fmt: str = ",.1f") -> str:
  """``median (min-max)`` of a `_spread`."""
  m, lo, hi = (d[k] * scale for k in ("median", "min", "max"))
  return f"{m:{fmt}} ({lo:{fmt}}-{hi:{fmt}})"


def measure_rounds(timers: dict, rounds: int, predict) -> list[dict]:
  """Call every timer once per round, in turn (so that load changes hit all of them alike), and
  ``predict(row)`` on each round's row."""
  out = []
  for _ in range(rounds):
    row = {}
    for k, t in timers.items():
      v = t()
      if isinstance(v, tuple):  # (wall, cpu) of a part
        row[k], row[k.replace("_seconds", "_cpu_seconds")] = v
      else:
        row[k] = v
    row.update(predict(row))
    out.append(row)
  return out


def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}")
  if _STEPS.value < 10:
    raise ValueError(f"--steps={_STEPS.value}: the median needs at least 10 timed steps")
  if _ROUNDS.value < 1:
    raise ValueError(f"--rounds={_ROUNDS.value}: at least one round")
  config = _CONFIG.value
  from livermore_brain import cpu_tuning, families, planner, roofline
  from livermore_brain import data as data_lib

  task = families.make_task(config)
  rica = task.family == "rica"
  load0 = os.getloadavg()[0]
  pipe = real = skipped = None
  if _SKIP_DATA.value:
    skipped = "--skip_data"
  else:
    pipe, real, skipped = input_pipeline(config, task)  # a real (whitened) batch for the step
  info, step_t, costs, colls = step_timer(config, _STEPS.value, _WARMUP.value, real, task=task)
  timers = dict(
    ceiling=ceiling_timer(_MATMUL.value, _REPEATS.value),
    bandwidth=bandwidth_timer(_BANDWIDTH_MB.value),
    step=step_t,
  )
  parts_info = mm_costs = None
  if _BREAKDOWN.value and rica:
    part_timers, parts_info, mm_costs = breakdown_timers(config, task)
    timers.update(part_timers)
    for name in _OPTIMIZERS.value:  # the same step with another update, same rounds
      other = config.copy_and_resolve_references()
      other.optimizer.name = name
      timers[f"step_{name}"] = step_timer(other, _STEPS.value, _WARMUP.value, real)[1]

  def predict(row):
    dev = cpu_device(row["ceiling"]["gflops"], row["bandwidth"]["gbps"], info["devices"])
    r = roofline.predict(costs, dev, collectives=colls, group=planner.op_group)
    out = dict(roofline=r, measured_over_predicted=row["step"]["step_seconds"] / r["seconds"])
    # The same in CPU time (GFLOP and GB per CPU-second of this process, step CPU time): what a
    # shared machine's load changes least.
    ceil_cpu = 2 * _MATMUL.value**3 / row["ceiling"]["cpu_seconds"] / 1e9
    bw_cpu = row["bandwidth"]["bytes"] / row["bandwidth"]["cpu_seconds"] / 1e9
    r_cpu = roofline.predict(
      costs, cpu_device(ceil_cpu, bw_cpu, info["devices"]), collectives=colls
    )
    out.update(predicted_cpu_seconds=r_cpu["seconds"],
               cpu_over_predicted=row["step"]["step_cpu_seconds"] / r_cpu["seconds"])  # fmt: skip
    if mm_costs is not None:
      out["predicted_matmul_seconds"] = roofline.predict(mm_costs, dev)["seconds"]
      out["beyond_matmuls"] = row["step"]["step_seconds"] / row["matmul_seconds"] - 1
      out["beyond_matmuls_cpu"] = row["step"]["step_cpu_seconds"] / row["matmul_cpu_seconds"] - 1
      for name in _OPTIMIZERS.value:
        cpu = row[f"step_{name}"]["step_cpu_seconds"]
        out[f"beyond_matmuls_cpu_{name}"] = cpu / row["matmul_cpu_seconds"] - 1
    return out

  rounds = measure_rounds(timers, _ROUNDS.value, predict)
  data_rate = None
  if pipe is not None:
    data_rate = float(data_lib.measure_throughput(pipe, _DATA.value))
  load1 = os.getloadavg()[0]
  med = lambda f: _median([f(r) for r in rounds])
  spread = lambda f: _spread([f(r) for r in rounds])
  step = dict(info, **rounds[-1]["step"])
  step.update(step_seconds=med(lambda r: r["step"]["step_seconds"]),
              step_cpu_seconds=med(lambda r: r["step"]["step_cpu_seconds"]),
              step_seconds_min=min(r["step"]["step_seconds_min"] for r in rounds),
              finite=all(r["step"]["finite"] for r in rounds))  # fmt: skip
  step.update(_step_rates(info, step["step_seconds"]))
  ceiling = dict(n=_MATMUL.value, gflops=med(lambda r: r["ceiling"]["gflops"]),
                 seconds=med(lambda r: r["ceiling"]["seconds"]))  # fmt: skip
  bandwidth = dict(
    bytes=rounds[0]["bandwidth"]["bytes"], gbps=spread(lambda r: r["bandwidth"]["gbps"])
  )
  last = rounds[-1]["roofline"]
  predicted = dict(
    step_seconds=spread(lambda r: r["roofline"]["seconds"]),
    measured_over_predicted=spread(lambda r: r["measured_over_predicted"]),
    cpu_seconds=spread(lambda r: r["predicted_cpu_seconds"]),
    cpu_over_predicted=spread(lambda r: r["cpu_over_predicted"]),
    compute_bound_share=last["compute_bound_share"],
    memory_bound_share=last["memory_bound_share"],
    flops=last["flops"],
    bytes=last["bytes"],
    groups=last["groups"],
    device=last["device"],
  )
  parts = None
  if parts_info is not None:
    parts = dict(
      parts_info,
      **{k: med(lambda r, k=k: r[k]) for k in _PARTS},
      spread={k: spread(lambda r, k=k: r[k]) for k in _PARTS + ("beyond_matmuls",
                                                                "beyond_matmuls_cpu")},
      predicted_matmul_seconds=med(lambda r: r["predicted_matmul_seconds"]),
      beyond_matmuls=med(lambda r: r["beyond_matmuls"]),
      beyond_matmuls_cpu=med(lambda r: r["beyond_matmuls_cpu"]),
    )  # fmt: skip
    parts["matmul_gflops"] = parts["matmul_flops"] / parts["matmul_seconds"] / 1e9
    parts["optimizers"] = {
      name: dict(
        step_seconds=spread(lambda r, n=name: r[f"step_{n}"]["step_seconds"]),
        step_cpu_seconds=spread(lambda r, n=name: r[f"step_{n}"]["step_cpu_seconds"]),
        beyond_matmuls_cpu=spread(lambda r, n=name: r[f"beyond_matmuls_cpu_{n}"]),
      )
      for name in _OPTIMIZERS.value
    }
  frac = step["achieved_gflops"] / ceiling["gflops"]
  out = dict(
    preset=config.get("preset", "?"),
    family=task.family,
    images_per_sec=step["images_per_sec"],
    achieved_gflops=step["achieved_gflops"],
    ceiling_gflops=ceiling["gflops"],
    fraction_of_ceiling=frac,
    memory_gbps=bandwidth["gbps"]["median"],
    predicted_step_seconds=predicted["step_seconds"]["median"],
    measured_step_seconds=step["step_seconds"],
    measured_over_predicted=predicted["measured_over_predicted"]["median"],
    data_images_per_sec=data_rate,
    data_over_step=(data_rate / step["images_per_sec"]) if data_rate else None,
    data_skipped=skipped,
    matmul_fraction_of_ceiling=(
      step["matmul_gflops"] / ceiling["gflops"] if step["matmul_gflops"] else None
    ),
    step=step,
    ceiling=ceiling,
    bandwidth=bandwidth,
    predicted=predicted,
    breakdown=parts,
    rounds=[
      dict(
        ceiling_gflops=r["ceiling"]["gflops"],
        memory_gbps=r["bandwidth"]["gbps"],
        step_seconds=r["step"]["step_seconds"],
        step_cpu_seconds=r["step"]["step_cpu_seconds"],
        predicted_seconds=r["roofline"]["seconds"],
        predicted_cpu_seconds=r["predicted_cpu_seconds"],
        **{
          k: r[k]
          for k in _PARTS + ("predicted_matmul_seconds", "beyond_matmuls", "beyond_matmuls_cpu")
          if k in r
        },
      )
      for r in rounds
    ],
    load_average=[round(load0, 2), round(load1, 2)],
    cpu_count=os.cpu_count(),
    cpu_tuning=cpu_tuning.applied(),
  )
  print(format_report(out, config), flush=True)
  print(json.dumps(out), flush=True)


def format_report(out: dict, config) -> str:
  step, ceiling, pred, parts = out["step"], out["ceiling"], out["predicted"], out["breakdown"]
  n = len(out["rounds"])
  spread = lambda key: _spread([r[key] for r in out["rounds"]])
  arch = config.model.get("arch")
  frac = out["fraction_of_ceiling"]
  load0, load1 = out["load_average"]
  rows = [
    f"benchmark: preset {out['preset']}, family {out['family']}"
    + (f" ({arch})" if arch else "")
    + f", batch {step['batch']}, mesh "
    + " x ".join(f"{k}={v}" for k, v in step["mesh"].items())
    + f", load average {load0:.1f} -> {load1:.1f} on {os.cpu_count()} CPUs",
    "  cpu tuning: "
    + ("; ".join(out["cpu_tuning"]) or "none (LB_CPU_TUNING=0, or not applicable)"),
    f"  {n} round(s), interleaved; each value: median over rounds (min-max)",
    f"  {'matmul ceiling':<34}{_range(spread('ceiling_gflops')):>26} GFLOP/s  "
    f"({ceiling['n']}^3 f32, median of {_REPEATS.value} per round)",
    f"  {'memory bandwidth':<34}{_range(spread('memory_gbps')):>26} GB/s  "
    f"(x + 1 over {out['bandwidth']['bytes'] / 2 / 2**20:,.0f} MiB, read + write)",
    f"  {'train step (median of ' + str(_STEPS.value) + ')':<34}"
    f"{_range(spread('step_seconds'), 1e3, ',.2f'):>26} ms  (compile "
    f"{step['compile_seconds']:.1f} s; step {step['planned_step']}'s, fields "
    f"{', '.join(step['fields'])})",
    f"  {'  CPU time of the process':<34}{_range(spread('step_cpu_seconds'), 1e3, ',.2f'):>26} ms",
    f"  {'  predicted (roofline)':<34}{_range(pred['step_seconds'], 1e3, ',.2f'):>26} ms  "
    f"({pred['compute_bound_share']:.0%} of it compute-bound, {pred['memory_bound_share']:.0%} "
    f"memory-bound; {pred['bytes'] / 1e6:,.0f} MB accessed)",
    f"  {'  measured / predicted':<34}{_range(pred['measured_over_predicted'], 1, '.2f'):>26}",
    f"  {'  same in CPU time':<34}{_range(pred['cpu_over_predicted'], 1, '.2f'):>26}  (predicted "
    f"{_range(pred['cpu_seconds'], 1e3, ',.2f')} CPU-ms at the ceiling and bandwidth per CPU-second)",
    f"  {'  images/s':<34}{step['images_per_sec']:>26,.1f}",
    f"  {'  XLA FLOPs of the step':<34}{step['flops_per_step'] / 1e9:>26,.3f} GFLOP  "
    f"({step['flops_per_image'] / 1e9:,.4f} GFLOP per image)",
    f"  {'  achieved (XLA FLOP count)':<34}{step['achieved_gflops']:>26,.1f} GFLOP/s  "
    f"= {frac:.1%} of ceiling",
  ]
  if step["matmul_gflops"]:
    rows.append(
      f"  {'  matmul FLOPs only':<34}{step['matmul_gflops']:>26,.1f} GFLOP/s  "
      f"= {out['matmul_fraction_of_ceiling']:.1%} of ceiling"
    )
  rows.append("  predicted by group (last round):")
  for name, g in pred["groups"].items():
    rows.append(
      f"  {'    ' + name:<34}{g['seconds'] * 1e3:>26,.2f} ms  ({g['bytes'] / 1e6:,.0f} MB)"
    )
  data_rate = out["data_images_per_sec"]
  if data_rate is not None:
    rows.append(
      f"  {'input pipeline alone':<34}{data_rate:>26,.1f} images/s  "
      f"= {out['data_over_step']:.2f}x the step"
    )
  else:
    rows.append(
      f"  {'input pipeline alone':<34}skipped ({out['data_skipped']}); the step ran on random data"
    )
  if parts is not None:
    sp = parts["spread"]
    rows += [
      "  the step's parts alone (same shapes, jitted separately, same rounds):",
      f"  {'  per-location matmuls':<34}{_range(sp['matmul_seconds'], 1e3, ',.2f'):>26} ms"
      f" on {parts['matmul_devices']} device(s)  = {parts['matmul_gflops']:,.1f} GFLOP/s"
      f" = {parts['matmul_gflops'] / ceiling['gflops']:.1%} of ceiling; predicted "
      f"{parts['predicted_matmul_seconds'] * 1e3:,.2f} ms",
      f"  {'  patch gathers':<34}{_range(sp['patches_seconds'], 1e3, ',.2f'):>26} ms",
      f"  {'  optimizer update + projection':<34}{_range(sp['update_seconds'], 1e3, ',.2f'):>26} ms",
      f"  {'  step beyond its matmuls':<34}{_range(sp['beyond_matmuls'], 100, '.0f'):>26} %"
      "  (step / matmuls alone - 1, per round)",
      f"  {'    in CPU time':<34}{_range(sp['beyond_matmuls_cpu'], 100, '.0f'):>26} %  (matmuls "
      f"{_range(sp['matmul_cpu_seconds'], 1e3, ',.2f')} ms, gathers "
      f"{_range(sp['patches_cpu_seconds'], 1e3, ',.2f')}, update "
      f"{_range(sp['update_cpu_seconds'], 1e3, ',.2f')})",
    ]
    for name, o in parts.get("optimizers", {}).items():
      rows.append(
        f"  {'  same step with ' + name:<34}{_range(o['step_cpu_seconds'], 1e3, ',.2f'):>26} CPU-ms"
        f"  = {_range(o['beyond_matmuls_cpu'], 100, '.0f')} % beyond the matmuls' CPU time"
      )
  elif _BREAKDOWN.value:
    rows.append(f"  matmul breakdown: skipped (RICA only; this config's family is {out['family']})")
  return "\n".join(rows)


if __name__ == "__main__":
  common.run(main)
