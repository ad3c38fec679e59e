r"""What a preset needs per device, by compiling one training step on fake CPU devices.

  python -m experiments.scale_plan --config=experiments/configs/rica_yfcc.py:paper \
      --mesh=data:1,model:8
  python -m experiments.scale_plan --config=experiments/configs/rica_yfcc.py:paper \
      --mesh=data:1,model:8 --variants          # + bf16 compute / remat side by side
  python -m experiments.scale_plan --config=experiments/configs/rica_yfcc.py:tiny \
      --mesh=data:2,model:4 --stages=all
  python -m experiments.scale_plan --config=experiments/configs/resception.py:imagenet \
      --mesh=data:8,model:1                     # any family's config
  python -m experiments.scale_plan --config=experiments/configs/rica_yfcc.py:paper \
      --mesh=data:1,model:8 --device=h200 --optimizer_options   # update options on an H200

Nothing is allocated: the step is lowered from ``jax.ShapeDtypeStruct``s carrying the real
shardings and compiled for ``data x model`` fake CPU devices (this script sets
``--xla_force_host_platform_device_count`` itself, before JAX is imported). Prints a table and,
as its last line, the plan as JSON. RICA configs get `livermore_brain.planner.plan` (every
pipeline stage on request, each untied layer alone, bf16 / remat variants); every other family
the step its task trains with (`planner.plan_task`). Any ``--config.<key>=`` override applies
(e.g. ``--config.optimizer.name=sgd``). The projection is a roofline
(`livermore_brain.roofline`): every op of the compiled step at ``max(FLOPs / peak, bytes /
bandwidth)`` of ``--device`` (datasheet peaks), collectives at ``--link_gbps``; ``--utilization``
derates it only when given.
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
_DEVICE = flags.DEFINE_enum(
  "device", "h100", ["h100", "h200", "a100"], "GPU whose datasheet peaks the roofline uses."
)
_PRECISION = flags.DEFINE_enum(
  "precision", "", ["", "tf32", "fp32", "bf16"],
  "Matmul precision (default: tf32 for float32 compute, bf16 for bfloat16).",
)  # fmt: skip
_LINK = flags.DEFINE_float(
  "link_gbps", 0.0, "Interconnect GB/s per device and direction (default: the device's NVLink)."
)
_UTIL = flags.DEFINE_float(
  "utilization", 1.0, "Optional derate of the roofline (1.0: the bound itself, the default)."
)
_OPTIONS = flags.DEFINE_bool(
  "optimizer_options", False,
  "RICA: re-plan the last stage with sgd / momentum / adam and show each one's update share, "
  "memory per device and a one-pass fused update + projection (and bf16 moments) predicted.",
)  # fmt: skip
_IMAGES = flags.DEFINE_float("images", 0.0, "Images to train on (default: num_steps x batch).")
_MEMORY = flags.DEFINE_float("memory_gb", 80.0, "Device memory to fit, in GB (1e9 bytes).")
_JSON = flags.DEFINE_string("json_out", "", "Also write the plan JSON to this file.")


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
  b = p["bytes_per_device"]
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
  out += ["", *format_roofline(p)]
  if p.get("optimizer_options"):
    out += ["", *format_options(p["optimizer_options"])]
  return "\n".join(out)


def _ms(s: float) -> str:
  return f"{s * 1e3:,.2f} ms"


def format_roofline(p: dict) -> list[str]:
  """Each stage's roofline (per device, ops one after another, collectives not overlapped), the
  last stage's groups of ops, and the projection."""
  r = p["roofline"]
  d = r["device"]
  derate = f", derated to {r['utilization']:.0%}" if r["utilization"] < 1 else ""
  out = [
    f"roofline on {d['name']} ({d['matmul_tflops']:g} TFLOP/s matmul, {d['vector_tflops']:g} "
    f"other, {d['memory_gbps']:,.0f} GB/s memory, {d['link_gbps']:g} GB/s link{derate}); "
    "per device, each op max(compute, memory)",
    f"  {'stage':<8}{'step':>12}{'ops':>12}{'collectives':>14}{'compute-bd':>12}"
    f"{'memory-bd':>11}{'max(F/P,B/BW)':>15}{'bytes':>12}",
  ]
  for s in p.get("stages") or [dict(stage="-", roofline=r)]:
    q = s["roofline"]
    out.append(
      f"  {s['stage']!s:<8}{_ms(q['seconds']):>12}{_ms(q['ops_seconds']):>12}"
      f"{_ms(q['collective_seconds']):>14}{q['compute_bound_share']:>12.0%}"
      f"{q['memory_bound_share']:>11.0%}{_ms(q['program_bound_seconds']):>15}"
      f"{_size(q['bytes']):>12}"
    )
  out.append(
    f"  {'group (last stage; share of step)':<34}{'predicted':>12}{'share':>8}{'FLOPs':>16}"
    f"{'bytes':>12}"
  )
  for name, g in r["groups"].items():
    out.append(
      f"  {name:<34}{_ms(g['seconds']):>12}{g['seconds'] / max(r['seconds'], 1e-30):>8.0%}"
      f"{_flops(g['flops']):>16}{_size(g['bytes']):>12}"
    )
  proj = p["projection"]
  out.append(
    f"projection: {_ms(proj['step_seconds'])} per step of {p['batch']} -> "
    f"{proj['images_per_sec']:,.0f} images/s; {proj['images']:,.0f} images in "
    + (f"{proj['days']:,.2f} days" if proj["days"] >= 1 else f"{proj['days'] * 24:,.2f} hours")
  )
  return out


def format_options(rows: list[dict]) -> list[str]:
  out = [
    "optimizer options (last stage; 'fused' = one pass reading gradient, filters and moments "
    "once and writing them once, the row norm in registers: a custom kernel, not XLA's fusions)",
    f"  {'option':<34}{'per device':>12}{'update':>12}{'share':>8}{'step':>12}{'compiled':>10}",
  ]
  for o in rows:
    out.append(
      f"  {o['name']:<34}{_size(o['bytes_per_device']):>12}{_ms(o['update_seconds']):>12}"
      f"{o['update_share']:>8.0%}{_ms(o['step_seconds']):>12}{'yes' if o['compiled'] else 'no':>10}"
    )
  return out


# Bytes per parameter that one fused pass moves: gradient read, filters read and written, and each
# float32 moment read and written (8), bfloat16 moments half that.
_FUSED_BYTES = {"sgd": 12, "momentum": 20, "adam": 28, "adam, bf16 moments": 20}
_STATE_BYTES = {"sgd": 0, "momentum": 4, "adam": 8, "adam, bf16 moments": 4}  # per parameter


def optimizer_options(config, mesh, batch, kw, p: dict) -> list[dict]:
  """Each optimizer re-planned (the last stage, compiled) plus, for each, one fused pass
  (predicted from `_FUSED_BYTES` at the device's bandwidth), and Adam with bfloat16 moments (fp32
  master filters; predicted from the Adam plan: 4 bytes less state per parameter)."""
  import copy

  from livermore_brain import families, planner

  dev = p["roofline"]["device"]
  per_device = p["params"]["stored"] / mesh.shape["model"]  # the state splits over model
  fused = lambda name: per_device * _FUSED_BYTES[name] / (dev["memory_gbps"] * 1e9)
  plans, rows = {}, []
  for name in ("adam", "momentum", "sgd"):
    if config.optimizer.name == name:
      q = p
    else:
      c = copy.deepcopy(config)
      c.unlock()
      c.optimizer.name = name
      task = families.make_task(c)
      q = planner.plan(task.spec, task.tx, mesh, batch, isolate=False,
                       compute_dtype=kw["compute_dtype"], remat=kw["remat"], device=kw["device"],
                       utilization=kw["utilization"], images=kw["images"])  # fmt: skip
    plans[name] = q
    r = q["roofline"]
    upd = r["groups"].get("optimizer update + projection", {}).get("seconds", 0.0)
    rows.append(dict(name=f"{name} (XLA)", compiled=True, bytes_per_device=q["bytes_per_device"]
                     ["total"], update_seconds=upd, step_seconds=r["seconds"]))  # fmt: skip
    rows.append(dict(name=f"{name}, fused update+projection", compiled=False,
                     bytes_per_device=q["bytes_per_device"]["total"], update_seconds=fused(name),
                     step_seconds=r["seconds"] - upd + fused(name)))  # fmt: skip
  adam = plans["adam"]
  upd = adam["roofline"]["groups"].get("optimizer update + projection", {}).get("seconds", 0.0)
  saved = per_device * (_STATE_BYTES["adam"] - _STATE_BYTES["adam, bf16 moments"])
  for fuse in (False, True):
    t = fused("adam, bf16 moments") if fuse else upd * 20 / 28  # moments' traffic halves
    rows.append(dict(
      name="adam, bf16 moments" + (", fused" if fuse else " (XLA, scaled)"), compiled=False,
      bytes_per_device=adam["bytes_per_device"]["total"] - saved,  # the donated state, once
      update_seconds=t, step_seconds=adam["roofline"]["seconds"] - upd + t,
    ))  # fmt: skip
  for o in rows:
    o["update_share"] = o["update_seconds"] / o["step_seconds"] if o["step_seconds"] else 0.0
  return rows


def _device(compute_dtype: str):
  """The roofline's device: ``--device`` at ``--precision`` (default: the compute dtype's),
  ``--link_gbps`` over its NVLink."""
  import dataclasses

  from livermore_brain import roofline

  d = roofline.gpu(_DEVICE.value, _PRECISION.value or roofline.precision_for(compute_dtype))
  return dataclasses.replace(d, link_gbps=_LINK.value) if _LINK.value else d


def _rica_plan(config, mesh, batch, kw) -> dict:
  """`planner.plan` of a RICA config, with this script's stage / isolation / variant flags."""
  import jax.numpy as jnp

  from livermore_brain import families, planner

  task = families.make_task(config)  # the spec and optimizer training builds
  spec, tx = task.spec, task.tx
  dtype = _DTYPE.value or config.get("compute_dtype", "float32")
  remat = {"": bool(config.get("remat", False)), "true": True, "false": False}[_REMAT.value]
  kw = dict(kw, device=_device(jnp.dtype(dtype).name))
  p = planner.plan(
    spec, tx, mesh, batch, compute_dtype=jnp.dtype(dtype), remat=remat, stages=_STAGES.value,
    isolate=_ISOLATE.value, **kw,
  )  # fmt: skip
  p["family"] = "rica"
  if _OPTIONS.value:
    p["optimizer_options"] = optimizer_options(
      config, mesh, batch, dict(kw, compute_dtype=jnp.dtype(dtype), remat=remat), p
    )
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
    stages=_STAGES.value != "last", optimizer_options=_OPTIONS.value,
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
  kw = dict(kw, device=_device(dtype.name))
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
  kw = dict(rules=rules, utilization=_UTIL.value, images=images)
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
