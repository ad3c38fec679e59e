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
4. RICA only: the step's matmuls, patch gathers and optimizer update alone (`timing.breakdown`), and
   with ``--also_optimizers=sgd,...`` the same step with those optimizers, in the same rounds
   against the same matmuls (what the update costs inside the step); ``--also_autodiff``: the
   same steps with autodiff's gradient of the cost (`rica.autodiff_gradients`), the reference
   for the hand-written backward. For each step, its floor on this machine: the bytes its
   compiled non-matmul ops move (`roofline.op_costs`) at the stream bandwidth measured in the
   same round, as a share of the matmuls' time.

Prints a table and, as its last line, JSON with ``images_per_sec``, ``achieved_gflops``,
``ceiling_gflops``, ``fraction_of_ceiling`` and ``data_images_per_sec`` (plus details). The step
runs on the local devices and mesh of the config (``--config.mesh``); shapes come from the
config's preset, so a re-sized preset is measured as it is. Timings on a shared machine are only
as good as its load: the 1-minute load average is printed next to them.
"""

from __future__ import annotations

import contextlib
import json
import os

from absl import flags
from ml_collections import config_flags

from experiments import common
from experiments.timing import (
  bandwidth_timer,
  breakdown_timers,
  ceiling_timer,
  cpu_device,
  median,
  nonmatmul_bytes,
  step_rates,
  step_timer,
)

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
_AUTODIFF = flags.DEFINE_bool(
  "also_autodiff",
  False,
  "RICA: also time each step (the config's optimizer and --also_optimizers) with autodiff's "
  "gradient of the cost instead of the hand-written backward, in the same rounds.",
)
_BREAKDOWN = flags.DEFINE_bool(
  "breakdown", True, "RICA: also time the step's matmuls, patch gathers and optimizer update alone."
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


_PARTS = ("matmul_seconds", "patches_seconds", "update_seconds", "matmul_cpu_seconds",
          "patches_cpu_seconds", "update_cpu_seconds")  # fmt: skip


def _spread(xs) -> dict:
  return dict(median=median(xs), min=min(xs), max=max(xs), values=list(xs))


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
  floors = {"": nonmatmul_bytes(costs)}  # per step variant ("": the config's step)
  variants = [(name, name, False) for name in _OPTIMIZERS.value]
  if rica and _AUTODIFF.value:
    names = [config.optimizer.name, *_OPTIMIZERS.value]
    variants += [(f"{name}, autodiff", name, True) for name in names]
  if _BREAKDOWN.value and rica:
    from livermore_brain.layers import rica as rica_lib

    part_timers, parts_info, mm_costs = breakdown_timers(config, task)
    timers.update(part_timers)
    for label, name, autodiff in variants:  # the same step, another update or backward
      other = config.copy_and_resolve_references()
      other.optimizer.name = name
      with rica_lib.autodiff_gradients() if autodiff else contextlib.nullcontext():
        _, timers[f"step_{label}"], other_costs, _ = step_timer(
          other, _STEPS.value, _WARMUP.value, real
        )
      floors[label] = nonmatmul_bytes(other_costs)

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
      mm_cpu = row["matmul_cpu_seconds"]
      out["predicted_matmul_seconds"] = roofline.predict(mm_costs, dev)["seconds"]
      out["beyond_matmuls"] = row["step"]["step_seconds"] / row["matmul_seconds"] - 1
      out["beyond_matmuls_cpu"] = row["step"]["step_cpu_seconds"] / mm_cpu - 1
      # the floor: the non-matmul ops' bytes at stream bandwidth, in CPU time, over the matmuls'
      out["floor_beyond_matmuls_cpu"] = floors[""]["total"] / (bw_cpu * 1e9) / mm_cpu
      for label, _, _ in variants:
        out[f"beyond_matmuls_cpu_{label}"] = row[f"step_{label}"]["step_cpu_seconds"] / mm_cpu - 1
        out[f"floor_beyond_matmuls_cpu_{label}"] = floors[label]["total"] / (bw_cpu * 1e9) / mm_cpu
      out["memory_gbps_cpu"] = bw_cpu
    return out

  rounds = measure_rounds(timers, _ROUNDS.value, predict)
  data_rate = None
  if pipe is not None:
    data_rate = float(data_lib.measure_throughput(pipe, _DATA.value))
  load1 = os.getloadavg()[0]
  med = lambda f: median([f(r) for r in rounds])
  spread = lambda f: _spread([f(r) for r in rounds])
  step = dict(info, **rounds[-1]["step"])
  step.update(step_seconds=med(lambda r: r["step"]["step_seconds"]),
              step_cpu_seconds=med(lambda r: r["step"]["step_cpu_seconds"]),
              step_seconds_min=min(r["step"]["step_seconds_min"] for r in rounds),
              finite=all(r["step"]["finite"] for r in rounds))  # fmt: skip
  step.update(step_rates(info, step["step_seconds"]))
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
              "beyond_matmuls_cpu", "floor_beyond_matmuls_cpu", "memory_gbps_cpu")},
      predicted_matmul_seconds=med(lambda r: r["predicted_matmul_seconds"]),
      beyond_matmuls=med(lambda r: r["beyond_matmuls"]),
      beyond_matmuls_cpu=med(lambda r: r["beyond_matmuls_cpu"]),
    )  # fmt: skip
    parts["matmul_gflops"] = parts["matmul_flops"] / parts["matmul_seconds"] / 1e9
    parts["nonmatmul_bytes"] = floors[""]
    # other steps, same rounds: keyed by optimizer, ", autodiff" for autodiff's backward
    parts["optimizers"] = {
      label: dict(
        step_seconds=spread(lambda r, n=label: r[f"step_{n}"]["step_seconds"]),
        step_cpu_seconds=spread(lambda r, n=label: r[f"step_{n}"]["step_cpu_seconds"]),
        beyond_matmuls_cpu=spread(lambda r, n=label: r[f"beyond_matmuls_cpu_{n}"]),
        floor_beyond_matmuls_cpu=spread(lambda r, n=label: r[f"floor_beyond_matmuls_cpu_{n}"]),
        nonmatmul_bytes=floors[label],
      )
      for label, _, _ in variants
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
    nb = parts["nonmatmul_bytes"]
    rows += [
      f"  {'    floor (non-matmul bytes)':<34}{_range(sp['floor_beyond_matmuls_cpu'], 100, '.0f'):>26}"
      f" %  ({nb['total'] / 1e6:,.0f} MB at {_range(sp['memory_gbps_cpu'])} GB per CPU-second: "
      + ", ".join(f"{k} {v / 1e6:,.0f}" for k, v in nb.items() if k != "total")
      + ")",
    ]
    for name, o in parts.get("optimizers", {}).items():
      rows.append(
        f"  {'  same step with ' + name:<34}{_range(o['step_cpu_seconds'], 1e3, ',.2f'):>26} CPU-ms"
        f"  = {_range(o['beyond_matmuls_cpu'], 100, '.0f')} % beyond the matmuls' CPU time"
        f" (floor {_range(o['floor_beyond_matmuls_cpu'], 100, '.0f')} %: "
        f"{o['nonmatmul_bytes']['total'] / 1e6:,.0f} MB)"
      )
  elif _BREAKDOWN.value:
    rows.append(f"  matmul breakdown: skipped (RICA only; this config's family is {out['family']})")
  return "\n".join(rows)


if __name__ == "__main__":
  common.run(main)
