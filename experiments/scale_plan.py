r"""What a preset needs per device, by compiling one training step on fake CPU devices.

  python -m experiments.scale_plan --config=experiments/configs/rica_yfcc.py:paper \
      --mesh=data:1,model:8
  python -m experiments.scale_plan --config=experiments/configs/rica_yfcc.py:paper \
      --mesh=data:1,model:8 --variants          # + bf16 compute / remat side by side
  python -m experiments.scale_plan --config=experiments/configs/rica_yfcc.py:tiny \
      --mesh=data:2,model:4 --stages=all
  python -m experiments.scale_plan --config=experiments/configs/resception.py:imagenet \
      --mesh=data:8,model:1                     # any family's config

Nothing is allocated: the step is lowered from ``jax.ShapeDtypeStruct``s carrying the real
shardings and compiled for ``data x model`` fake CPU devices (this script sets
``--xla_force_host_platform_device_count`` itself, before JAX is imported). Prints a table and,
as its last line, the plan as JSON. RICA configs get `livermore_brain.planner.plan` (every
pipeline stage on request, each untied layer alone, bf16 / remat variants); every other family
the step its task trains with (`planner.plan_task`). Any ``--config.<key>=`` override applies
(e.g. ``--config.optimizer.name=sgd``).
"""

from __future__ import annotations

import os
import re
import sys


def _argv_value(name: str, argv: list[str]) -> str | None:
  for i, a in enumerate(argv):
    if a.startswith(f"--{name}="):
      return a.split("=", 1)[1]
    if a == f"--{name}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def fake_device_count(argv: list[str]) -> int:
  """Devices the planned mesh needs, from ``--devices`` or ``--mesh`` (no JAX import)."""
  devices = _argv_value("devices", argv)
  if devices:
    return int(devices)
  sizes = [int(v) for v in re.findall(r"-?\d+", _argv_value("mesh", argv) or "data:1,model:8")]
  if any(v < 1 for v in sizes):
    raise SystemExit("error: --mesh sizes must be positive here (or pass --devices=N)")
  n = 1
  for v in sizes:
    n *= v
  return n


if __name__ == "__main__":  # must precede the first JAX import (the config file imports JAX)
  _flag = "--xla_force_host_platform_device_count"
  _rest = re.sub(rf"{_flag}=\d+", "", os.environ.get("XLA_FLAGS", ""))
  os.environ["XLA_FLAGS"] = f"{_rest} {_flag}={fake_device_count(sys.argv)}".strip()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

import json  # noqa: E402

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from experiments import common  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  os.path.join(os.path.dirname(__file__), "configs", "rica_yfcc.py"),
  "Config file with a preset, any family: experiments/configs/rica_yfcc.py:tiny|cpu|paper, "
  "experiments/configs/resception.py:tiny|cpu|imagenet.",
  lock_config=True,
)
_MESH = flags.DEFINE_string("mesh", "data:1,model:8", "Mesh to plan: data:A,model:B.")
_DEVICES = flags.DEFINE_integer("devices", 0, "Fake CPU devices (default: the mesh's size).")
_BATCH = flags.DEFINE_integer("batch", 0, "Global batch (default: config.batch_size).")
_DTYPE = flags.DEFINE_enum(
  "compute_dtype", "", ["", "float32", "bfloat16"], "Default: config.compute_dtype."
)
_REMAT = flags.DEFINE_enum("remat", "", ["", "true", "false"], "Default: config.remat.")
_STAGES = flags.DEFINE_enum(
  "stages", "last", ["last", "all"], "Plan the stage with every layer active, or every stage."
)
_ISOLATE = flags.DEFINE_bool("isolate", True, "Also compile each untied layer's update alone.")
_VARIANTS = flags.DEFINE_bool(
  "variants", False, "Also compile float32/bfloat16 x remat off/on and show their effect."
)
_TFLOPS = flags.DEFINE_float(
  "tflops", 0.0, "Peak TFLOP/s per device (default: H100 SXM dense, 989 bf16 / 495 tf32)."
)
_UTIL = flags.DEFINE_float("utilization", 0.4, "Fraction of peak the step sustains.")
_IMAGES = flags.DEFINE_float("images", 0.0, "Images to train on (default: num_steps x batch).")
_MEMORY = flags.DEFINE_float("memory_gb", 80.0, "Device memory to fit, in GB (1e9 bytes).")
_JSON = flags.DEFINE_string("json_out", "", "Also write the plan JSON to this file.")

H100_PEAK_TFLOPS = {"bfloat16": 989.0, "float32": 495.0}  # dense; float32 matmuls run as TF32


def _size(n: float) -> str:
  """Bytes in decimal units: ``40.69 GB``, ``426.6 kB``."""
  for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
    if abs(n) >= scale:
      return f"{n / scale:,.2f} {unit}"
  return f"{n:,.0f} B"


def _flops(n: float) -> str:
  for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
    if abs(n) >= scale:
      return f"{n / scale:,.2f} {unit}"
  return f"{n:,.0f} FLOP"


def _colls(c: dict) -> list[str]:
  rows = [f"  {'axes':<12}{'count':>7}{'non-scalar':>12}{'per device':>14}  ops"]
  for axes, v in c.items():
    ops = ", ".join(f"{k} {n}" for k, n in sorted(v["ops"].items()))
    rows.append(
      f"  {axes:<12}{v['count']:>7}{v['nonscalar_count']:>12}{_size(v['bytes']):>14}  {ops}"
    )
  return rows if c else ["  (none)"]


def format_plan(p: dict) -> str:
  """The human-readable table of a plan (`planner.plan` or `planner.plan_task`)."""
  b, proj = p["bytes_per_device"], p["projection"]
  mesh = " x ".join(f"{k}={v}" for k, v in p["mesh"].items())
  family = ""
  if p.get("family", "rica") != "rica":
    family = f", family {p['family']}" + (f" ({p['arch']})" if p.get("arch") else "")
  out = [
    f"scale plan: preset {p.get('preset', '?')}{family}, mesh {mesh} ({p['devices']} "
    f"devices), batch {p['batch']}, optimizer {p.get('optimizer', '?')}, compute "
    f"{p.get('compute_dtype', '?')}"
    + (f", remat {'on' if p['remat'] else 'off'}" if "remat" in p else "")
    + (f", planned step {p['step']}" if "step" in p else ""),
    "",
    f"{'parameters':<34}{'count':>18}",
  ]
  out += [f"  {k:<32}{v:>18,}" for k, v in p["params"].get("per_layer", {}).items()]
  out.append(f"  {'total':<32}{p['params']['total']:>18,}")
  if "stored" in p["params"]:
    out.append(f"  {'stored (locations padded)':<32}{p['params']['stored']:>18,}")
  fits = f"   fits {p['memory_gb']:g} GB: {'yes' if p['fits'] else 'NO'}" if "fits" in p else ""
  matmuls = (
    f"; matmuls alone {_flops(p['matmul_flops_per_step'])}" if "matmul_flops_per_step" in p else ""
  )
  out += [
    "",
    f"{'bytes per device (XLA memory analysis)':<40}",
    f"  {'arguments (state + batch)':<38}{_size(b['arguments']):>12}",
    f"  {'outputs':<38}{_size(b['outputs']):>12}",
    f"  {'aliased (donated state reused)':<38}{'-' + _size(b['aliased']):>12}",
    f"  {'temporaries':<38}{_size(b['temporaries']):>12}",
    f"  {'total':<38}{_size(b['total']):>12}{fits}",
    "",
    f"FLOPs per step (XLA cost analysis): {_flops(p['flops_per_step'])} "
    f"({_flops(p['flops_per_device'])} per device){matmuls}; "
    f"{_flops(p['flops_per_step'] / p['batch'])} per image",
    f"compile time: {p['compile_seconds']:.1f} s",
    "",
    "collectives per step (compiled HLO, by the mesh axes their groups span)",
    *_colls(p["collectives"]),
  ]
  if p.get("largest_collectives"):
    out.append("  largest:")
    for c in p["largest_collectives"]:
      out.append(f"    {c['op']:<20}{c['axes']:<12}{_size(c['bytes']):>12}  {c['where'][:60]}")
  if p.get("untied"):
    out += ["", "untied layers alone (cost + update, input map given, replicated over model)"]
    for name, u in p["untied"].items():
      out.append(
        f"  {name}: {u['model_collectives']} model-axis collective(s), "
        f"{u['model_nonscalar_collectives']} beyond scalars; {_size(u['bytes_per_device']['total'])}"
        f"/device; all axes: "
        + "; ".join(f"{k} {v['count']} ({_size(v['bytes'])})" for k, v in u["collectives"].items())
      )
  if len(p.get("stages", ())) > 1:
    out += ["", f"  {'stage':<8}{'active':<28}{'per device':>14}{'per step':>16}{'compile s':>11}"]
    for s in p["stages"]:
      out.append(
        f"  {s['stage']:<8}{','.join(s['active']):<28}{_size(s['bytes_per_device']['total']):>14}"
        f"{_flops(s['flops_per_step']):>16}{s['compile_seconds']:>11.1f}"
      )
  if p.get("variants"):
    out += ["", f"  {'variant':<26}{'per device':>14}{'temporaries':>14}{'per step':>16}"]
    for v in p["variants"]:
      out.append(
        f"  {v['name']:<26}{_size(v['bytes_per_device']['total']):>14}"
        f"{_size(v['bytes_per_device']['temporaries']):>14}{_flops(v['flops_per_step']):>16}"
      )
  out += [
    "",
    f"projection: {p['devices']} x {proj['tflops_per_device']:g} TFLOP/s x "
    f"{proj['utilization']:.0%} -> {proj['images_per_sec']:,.0f} images/s; "
    f"{proj['images']:,.0f} images in "
    + (f"{proj['days']:,.2f} days" if proj["days"] >= 1 else f"{proj['days'] * 24:,.2f} hours"),
  ]
  return "\n".join(out)


def _rica_plan(config, mesh, batch, kw) -> dict:
  """`planner.plan` of a RICA config, with this script's stage / isolation / variant flags."""
  import jax.numpy as jnp

  from livermore_brain import families, planner

  task = families.make_task(config)  # the spec and optimizer training builds
  spec, tx = task.spec, task.tx
  dtype = _DTYPE.value or config.get("compute_dtype", "float32")
  remat = {"": bool(config.get("remat", False)), "true": True, "false": False}[_REMAT.value]
  kw = dict(kw, tflops=kw["tflops"] or H100_PEAK_TFLOPS[jnp.dtype(dtype).name])
  p = planner.plan(
    spec, tx, mesh, batch, compute_dtype=jnp.dtype(dtype), remat=remat, stages=_STAGES.value,
    isolate=_ISOLATE.value, **kw,
  )  # fmt: skip
  p["family"] = "rica"
  if _VARIANTS.value:
    p["variants"] = []
    for d in ("float32", "bfloat16"):
      for r in (False, True):
        v = planner.plan(
          spec, tx, mesh, batch, compute_dtype=jnp.dtype(d), remat=r, isolate=False, **kw
        )
        p["variants"].append(
          dict(
            name=f"{d}, remat {'on' if r else 'off'}",
            compute_dtype=d,
            remat=r,
            bytes_per_device=v["bytes_per_device"],
            flops_per_step=v["flops_per_step"],
          )
        )
  return p


def _task_plan(config, family, mesh, batch, kw) -> dict:
  """`planner.plan_task` of any other family: the step its task trains with."""
  import jax.numpy as jnp

  from livermore_brain import families, planner

  rica_only = dict(
    compute_dtype=_DTYPE.value, remat=_REMAT.value, variants=_VARIANTS.value,
    stages=_STAGES.value != "last",
  )  # fmt: skip
  given = [f"--{k}" for k, v in rica_only.items() if v]
  if given:
    raise ValueError(
      f"{', '.join(given)} apply to RICA configs only (this config's family is {family!r}; "
      f"set the model's own options with --config.model.<key>=)"
    )
  task = families.make_task(config)
  model = getattr(task, "model", None)
  dtype = jnp.dtype(config.get("compute_dtype", None) or getattr(model, "dtype", "float32"))
  kw = dict(
    kw, tflops=kw["tflops"] or H100_PEAK_TFLOPS.get(dtype.name, H100_PEAK_TFLOPS["float32"])
  )
  p = planner.plan_task(task, mesh, batch, **kw)
  p.update(compute_dtype=dtype.name)
  if config.model.get("arch"):
    p["arch"] = str(config.model.arch)
  return p


def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}")
  import jax

  from livermore_brain import families
  from livermore_brain import sharding as shd

  config = _CONFIG.value
  family = families.family_of(config)
  rules = shd.rules_from_config(config.get("rules"))
  need = _DEVICES.value or fake_device_count(sys.argv)
  if jax.device_count() < need:
    raise ValueError(
      f"the mesh needs {need} devices but JAX has {jax.device_count()}; run this module as a "
      f"script (it fakes the devices) or pass --devices"
    )
  mesh = shd.make_mesh(_MESH.value, jax.devices()[:need])
  batch = _BATCH.value or int(config.batch_size)
  images = _IMAGES.value or float(config.num_steps) * batch
  kw = dict(rules=rules, tflops=_TFLOPS.value, utilization=_UTIL.value, images=images)
  if family == "rica":
    p = _rica_plan(config, mesh, batch, kw)
  else:
    p = _task_plan(config, family, mesh, batch, kw)
  p.update(
    preset=config.get("preset", "?"),
    optimizer=config.optimizer.name,
    memory_gb=_MEMORY.value,
    fits=p["bytes_per_device"]["total"] <= _MEMORY.value * 1e9,
  )
  print(format_plan(p), flush=True)
  line = json.dumps(p, sort_keys=False)
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      f.write(line + "\n")
  print(line, flush=True)


if __name__ == "__main__":
  common.run(main)
