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
4. RICA only: the step's matmuls, patch gathers and optimizer update alone (`breakdown`).

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
_BREAKDOWN = flags.DEFINE_bool(
  "breakdown", True, "RICA: also time the step's matmuls, patch gathers and optimizer update alone."
)


def _median(xs):
  xs = sorted(xs)
  n = len(xs)
  return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def _time(f, *args, repeats: int = 10) -> float:
  import jax

  jax.block_until_ready(f(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    times.append(time.perf_counter() - t)
  return _median(times)


def matmul_ceiling(n: int, repeats: int) -> dict:
  """GFLOP/s of a jitted float32 ``(n, n) @ (n, n)``, median over ``repeats`` calls."""
  import jax
  import jax.numpy as jnp

  ka, kb = jax.random.split(jax.random.key(0))
  a = jax.random.normal(ka, (n, n), jnp.float32)
  b = jax.random.normal(kb, (n, n), jnp.float32)
  med = _time(jax.jit(lambda a, b: a @ b), a, b, repeats=max(1, repeats))
  return dict(n=n, seconds=med, gflops=2 * n**3 / med / 1e9)


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


def time_step(config, steps: int, warmup: int, batch=None, task=None) -> dict:
  """Compile the step the task of ``config`` trains with at `Task.plan_step` (RICA: every layer
  active; `families.make_task` + ``task.step_fn``, what training builds) and time it (median of
  ``steps``). ``batch``: host arrays for some of the step's fields (e.g. a real batch from the
  pipeline); the others are `synthetic_batch`. ``task``: ``families.make_task(config)``, built
  here if not given."""
  import jax
  import numpy as np
  from jax.sharding import NamedSharding

  from livermore_brain import distributed, families, planner
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
  for _ in range(max(1, warmup)):
    state, m = compiled(state, x)
  jax.block_until_ready((state, m))
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    state, m = compiled(state, x)
    jax.block_until_ready((state, m))
    times.append(time.perf_counter() - t)
  med = _median(times)
  flops = analysis["flops_per_device"] * mesh.size
  out = dict(
    family=task.family,
    planned_step=step,
    devices=mesh.size,
    mesh=dict(mesh.shape),
    batch=b,
    fields=sorted(x),
    compile_seconds=compile_s,
    step_seconds=med,
    step_seconds_min=min(times),
    images_per_sec=b / med,
    flops_per_step=flops,
    flops_per_image=flops / b,
    achieved_gflops=flops / med / 1e9,
    temp_bytes=analysis["bytes_per_device"]["temporaries"],
    bytes_per_device=analysis["bytes_per_device"]["total"],
    finite=bool(all(np.isfinite(v) for v in jax.device_get(m).values())),
    matmul_flops_per_step=None,
    matmul_gflops=None,
  )
  if task.family == "rica":  # the matmuls the model needs (planner.matmul_flops), RICA only
    matmul = planner.matmul_flops(task.spec, task.sched.active(step), b)
    out.update(matmul_flops_per_step=matmul, matmul_gflops=matmul / med / 1e9)
  return out


def breakdown(config, task=None, repeats: int = 10) -> dict:
  """RICA only (``task``: the config's `RicaTask`, built if not given). The step's parts alone,
  same shapes: its per-location matmuls (encode, decode, decode input-gradient, two filter
  gradients per layer, forward-copy encodes), its patch gathers, and the optimizer update +
  projection (`rica.step.apply_gradients`, the step's own). Seconds (median) and, for the
  matmuls, FLOPs.

  The matmuls run on the config's mesh, their operands split as the step splits them
  (locations, or a dense layer's neurons, over ``model``; batch over ``data``): on a mesh of
  several devices this is what those products cost with no other work and no step-wide
  synchronization around them, an upper bound on what the step itself can reach. The gathers
  and the update run on one device."""
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
    maps.append(rand((g.in_h, g.in_w, b, g.in_c)))

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

  t_mm = _time(jax.jit(matmuls), mats, repeats=repeats)
  gathers = jax.jit(lambda ms: [geo.extract_patches(m, g) for m, g in zip(ms, spec.geometries)])
  t_ex = _time(gathers, maps, repeats=repeats)
  t_up = _time(jax.jit(update), params, opt, params, repeats=repeats)
  flops = planner.matmul_flops(spec, (True,) * n, b)
  return dict(
    matmul_seconds=t_mm,
    matmul_gflops=flops / t_mm / 1e9,
    matmul_devices=mesh.size,
    patches_seconds=t_ex,
    update_seconds=t_up,
  )


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


def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}")
  if _STEPS.value < 10:
    raise ValueError(f"--steps={_STEPS.value}: the median needs at least 10 timed steps")
  config = _CONFIG.value
  from livermore_brain import cpu_tuning, families
  from livermore_brain import data as data_lib

  task = families.make_task(config)
  rica = task.family == "rica"
  load0 = os.getloadavg()[0]
  ceiling = matmul_ceiling(_MATMUL.value, _REPEATS.value)
  pipe = real = skipped = None
  if _SKIP_DATA.value:
    skipped = "--skip_data"
  else:
    pipe, real, skipped = input_pipeline(config, task)  # a real (whitened) batch for the step
  step = time_step(config, _STEPS.value, _WARMUP.value, real, task=task)
  data_rate = None
  if pipe is not None:
    data_rate = float(data_lib.measure_throughput(pipe, _DATA.value))
  parts = breakdown(config, task) if _BREAKDOWN.value and rica else None
  load1 = os.getloadavg()[0]
  frac = step["achieved_gflops"] / ceiling["gflops"]
  out = dict(
    preset=config.get("preset", "?"),
    family=task.family,
    images_per_sec=step["images_per_sec"],
    achieved_gflops=step["achieved_gflops"],
    ceiling_gflops=ceiling["gflops"],
    fraction_of_ceiling=frac,
    data_images_per_sec=data_rate,
    data_over_step=(data_rate / step["images_per_sec"]) if data_rate else None,
    data_skipped=skipped,
    matmul_fraction_of_ceiling=(
      step["matmul_gflops"] / ceiling["gflops"] if step["matmul_gflops"] else None
    ),
    step=step,
    ceiling=ceiling,
    breakdown=parts,
    load_average=[round(load0, 2), round(load1, 2)],
    cpu_count=os.cpu_count(),
    cpu_tuning=cpu_tuning.applied(),
  )
  arch = config.model.get("arch")
  rows = [
    f"benchmark: preset {out['preset']}, family {task.family}"
    + (f" ({arch})" if arch else "")
    + f", batch {step['batch']}, mesh "
    + " x ".join(f"{k}={v}" for k, v in step["mesh"].items())
    + f", load average {load0:.1f} -> {load1:.1f} on {os.cpu_count()} CPUs",
    "  cpu tuning: "
    + ("; ".join(out["cpu_tuning"]) or f"none ({cpu_tuning.ENV}=0, or not applicable)"),
    f"  {'matmul ceiling':<34}{ceiling['gflops']:>12,.1f} GFLOP/s  "
    f"({ceiling['n']}^3 f32, median of {_REPEATS.value})",
    f"  {'train step (median of ' + str(_STEPS.value) + ')':<34}{step['step_seconds'] * 1e3:>12,.2f} ms"
    f"  (compile {step['compile_seconds']:.1f} s; step {step['planned_step']}'s, fields "
    f"{', '.join(step['fields'])})",
    f"  {'  images/s':<34}{step['images_per_sec']:>12,.1f}",
    f"  {'  XLA FLOPs of the step':<34}{step['flops_per_step'] / 1e9:>12,.3f} GFLOP  "
    f"({step['flops_per_image'] / 1e9:,.4f} GFLOP per image)",
    f"  {'  achieved (XLA FLOP count)':<34}{step['achieved_gflops']:>12,.1f} GFLOP/s  "
    f"= {frac:.1%} of ceiling",
  ]
  if step["matmul_gflops"]:
    rows.append(
      f"  {'  matmul FLOPs only':<34}{step['matmul_gflops']:>12,.1f} GFLOP/s  "
      f"= {out['matmul_fraction_of_ceiling']:.1%} of ceiling"
    )
  if data_rate is not None:
    rows.append(
      f"  {'input pipeline alone':<34}{data_rate:>12,.1f} images/s  "
      f"= {out['data_over_step']:.2f}x the step"
    )
  else:
    rows.append(f"  {'input pipeline alone':<34}skipped ({skipped}); the step ran on random data")
  if parts is not None:
    rows += [
      "  the step's parts alone (same shapes, jitted separately):",
      f"  {'  per-location matmuls':<34}{parts['matmul_seconds'] * 1e3:>12,.2f} ms"
      f" on {parts['matmul_devices']} device(s)"
      f"  = {parts['matmul_gflops']:,.1f} GFLOP/s = {parts['matmul_gflops'] / ceiling['gflops']:.1%}"
      " of ceiling",
      f"  {'  patch gathers':<34}{parts['patches_seconds'] * 1e3:>12,.2f} ms",
      f"  {'  optimizer update + projection':<34}{parts['update_seconds'] * 1e3:>12,.2f} ms",
    ]
  elif _BREAKDOWN.value:
    rows.append(f"  matmul breakdown: skipped (RICA only; this config's family is {task.family})")
  print("\n".join(rows), flush=True)
  print(json.dumps(out), flush=True)


if __name__ == "__main__":
  common.run(main)
