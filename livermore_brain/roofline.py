"""Roofline model of a compiled step: per-op FLOPs and bytes from the HLO, a device table, and a
predicted step time that can be checked where it runs (this CPU, `experiments.benchmark`).

Every top-level instruction of the compiled module (a fusion, a library call, a copy, a
collective) is costed from its shapes (`op_costs`): its bytes are its operands plus its result
(what XLA's own ``cost_analysis()`` counts per instruction, without its operand-utilization
refinement for slices and gathers inside fusions), its FLOPs the dots, convolutions, elementwise
ops and reductions of the computation it calls (XLA's counting rules: a dot is ``2 x output x
contraction``, an elementwise op one FLOP per element, transcendentals counted apart; a
convolution counts every kernel tap, also those over its zero padding, so a small-image conv net
counts more than XLA's exact count). On a
device with a matmul peak ``P_mm``, a non-matmul peak ``P_vec`` and a memory bandwidth ``BW``
each op takes (`predict`)::

    t_op = max(matmul_flops / P_mm + (other_flops + transcendentals) / P_vec,  bytes / BW)

— compute-bound when the first term wins, memory-bound otherwise — and the step the sum of its
ops (they run one after another) plus its collectives at a stated interconnect bandwidth
(`collective_seconds`: ring algorithms, ``2 (n-1)/n`` of the payload for an all-reduce). This is
a bound, not a guess at efficiency: a utilization derate is an explicit option
(``utilization``), 1.0 by default.

Where the per-op costs come from the CPU compiler (plans on fake CPU devices), its fusion
decisions stand in for the GPU's; the FLOPs are the same program's, the bytes are those of the
CPU's fusion boundaries.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Sequence

from livermore_brain import hlo

# ---------------------------------------------------------------------------------------------
# Devices.


@dataclasses.dataclass(frozen=True)
class Device:
  """Peaks of one device: ``matmul_tflops`` (dense matrix units at the compute precision),
  ``vector_tflops`` (everything else), ``memory_gbps`` (DRAM/HBM, GB/s = 1e9 B/s),
  ``link_gbps`` (interconnect per device and direction), ``memory_gb`` (capacity)."""

  name: str
  matmul_tflops: float
  vector_tflops: float
  memory_gbps: float
  link_gbps: float = 0.0
  memory_gb: float = 0.0
  note: str = ""


# Vendor datasheet numbers, dense (NVIDIA quotes tensor-core rates "with sparsity"; the dense rate
# is half). Memory bandwidth is the datasheet's HBM figure; link is NVLink per GPU per direction
# (the datasheets give the bidirectional total: 900 GB/s H100/H200 SXM, 600 GB/s A100 SXM).
#  * H100 SXM5 80 GB: NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100):
#    FP32 67 TFLOPS, TF32 989 / BF16 1,979 TFLOPS with sparsity -> 494.7 / 989.4 dense,
#    HBM3 3.35 TB/s, NVLink 900 GB/s.
#  * H200 SXM 141 GB: NVIDIA H200 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h200):
#    same compute as H100 SXM (FP32 67, TF32 989*, BF16 1,979* TFLOPS, *sparse), HBM3e 4.8 TB/s,
#    NVLink 900 GB/s.
#  * A100 SXM 80 GB: NVIDIA A100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/a100):
#    FP32 19.5 TFLOPS, TF32 156 / BF16 312 TFLOPS dense (312 / 624 sparse), HBM2e 2,039 GB/s,
#    NVLink 600 GB/s.
# Precision: "tf32" is what float32 dots run as under XLA:GPU's default matmul precision on these
# GPUs; "fp32" is `jax_default_matmul_precision="highest"` (CUDA cores); "bf16" bfloat16 compute.
_GPUS = {
  "h100": dict(fp32=67.0, tf32=494.7, bf16=989.4, memory_gbps=3350.0, link_gbps=450.0, gb=80.0),
  "h200": dict(fp32=67.0, tf32=494.7, bf16=989.4, memory_gbps=4800.0, link_gbps=450.0, gb=141.0),
  "a100": dict(fp32=19.5, tf32=156.0, bf16=312.0, memory_gbps=2039.0, link_gbps=300.0, gb=80.0),
}
PRECISIONS = ("tf32", "fp32", "bf16")
GPUS = tuple(_GPUS)


def gpu(name: str, precision: str = "tf32") -> Device:
  """A GPU of the table at a matmul precision (``tf32`` | ``fp32`` | ``bf16``); non-matmul work
  runs at the FP32 CUDA-core rate (bf16 elementwise at twice it is not assumed)."""
  if name not in _GPUS:
    raise ValueError(f"unknown device {name!r}; choose one of {GPUS} (or measure one)")
  if precision not in PRECISIONS:
    raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
  g = _GPUS[name]
  return Device(
    f"{name} {precision}", g[precision], g["fp32"], g["memory_gbps"], g["link_gbps"], g["gb"],
    note="vendor datasheet peaks, dense",
  )  # fmt: skip


def precision_for(compute_dtype: str) -> str:
  """The matmul precision a step of ``compute_dtype`` runs at under XLA:GPU's defaults."""
  return "bf16" if str(compute_dtype) in ("bfloat16", "bf16") else "tf32"


# ---------------------------------------------------------------------------------------------
# Per-op costs from HLO text.

_TRANSCENDENTAL = frozenset(
  "exponential exponential-minus-one log log-plus-one logistic power sqrt cbrt rsqrt tanh sine "
  "cosine tan atan2 erf".split()
)
_ELEMENTWISE = frozenset(
  "add subtract multiply divide remainder maximum minimum negate abs sign compare select clamp "
  "and or xor not floor ceil round-nearest-afz round-nearest-even is-finite".split()
)
_FREE = frozenset(
  "parameter constant get-tuple-element tuple bitcast after-all partition-id replica-id "
  "opt-barrier".split()
)
_ASYNC_DONE = re.compile(r"-(done|update)$")
_INSTR = re.compile(
  r"^\s*(?:ROOT\s+)?%(?P<name>[\w.\-]+)\s*=\s*(?P<shape>.+?)\s+(?P<op>[a-z][a-z0-9\-]*)\((?P<rest>.*)$"
)
_COMP = re.compile(r"^(?P<entry>ENTRY\s+)?%(?P<name>[\w.\-]+)\s.*\{\s*$")
_ARRAY = re.compile(r"\b([a-z][a-z0-9]*)\[([0-9,]*)\]")


def _arrays(shape: str) -> list[tuple[str, tuple[int, ...]]]:
  return [(t, tuple(int(v) for v in d.split(",") if v)) for t, d in _ARRAY.findall(shape)]


def _nbytes(arrays) -> int:
  return sum(hlo._BYTES.get(t, 4) * math.prod(d) for t, d in arrays if t != "token")


def _elements(arrays) -> int:
  return sum(math.prod(d) for _, d in arrays)


@dataclasses.dataclass
class _Instr:
  name: str
  op: str
  arrays: list
  operands: list[str]
  attrs: str


def _split_operands(rest: str) -> tuple[list[str], str]:
  """Operand names of ``op(...)`` and the attribute text after its closing parenthesis."""
  end = hlo._balanced("(" + rest, 0, "(", ")") - 1
  return re.findall(r"%([\w.\-]+)", rest[: end - 1]), rest[end:]


def parse_module(text: str) -> tuple[dict[str, list[_Instr]], str]:
  """``({computation: [instructions]}, entry name)`` of an HLO module's text."""
  comps: dict[str, list[_Instr]] = {}
  entry, current = "", None
  for line in text.splitlines():
    if current is None:
      m = _COMP.match(line)
      if m:
        current = comps.setdefault(m.group("name"), [])
        entry = m.group("name") if m.group("entry") else entry
      continue
    if line.strip() == "}":
      current = None
      continue
    m = _INSTR.match(line)
    if m:
      operands, attrs = _split_operands(m.group("rest"))
      current.append(_Instr(m.group("name"), m.group("op"), _arrays(m.group("shape")), operands,
                            attrs))  # fmt: skip
  return comps, entry


def _dims(attrs: str, key: str) -> list[int]:
  m = re.search(key + r"=\{([\d,]*)\}", attrs)
  return [int(v) for v in m.group(1).split(",") if v] if m else []


def _instr_flops(comps, i: _Instr, shapes: dict, memo: dict) -> tuple[float, float, float]:
  """``(matmul, other, transcendental)`` FLOPs of one instruction (its callees included);
  ``shapes`` maps the names of its operands to their arrays."""
  out = _elements(i.arrays)
  mm = other = trans = 0.0
  if i.op == "dot":
    lhs = shapes.get(i.operands[0], [("f32", ())])[0][1]
    mm = 2.0 * out * math.prod(lhs[d] for d in _dims(i.attrs, "lhs_contracting_dims"))
  elif i.op == "convolution":  # per output element: the kernel's size over its output features
    rhs = shapes.get(i.operands[1], [("f32", ())])[0][1]
    labels = re.search(r"dim_labels=\w+_(\w+)->", i.attrs)
    o = rhs[labels.group(1).index("o")] if labels else 1
    dil = re.search(r"lhs_dilate=([\dx]+)", i.attrs)  # an input gradient: 1 in d taps is real
    dil = math.prod(int(v) for v in dil.group(1).split("x")) if dil else 1
    mm = 2.0 * out * math.prod(rhs) / max(o, 1) / dil
  elif i.op in _TRANSCENDENTAL:
    trans = out
  elif i.op in _ELEMENTWISE:
    other = out
  elif i.op == "reduce-window":  # the reducer once per window element
    size = re.search(r"window=\{size=([\dx]+)", i.attrs)
    other = out * (math.prod(int(v) for v in size.group(1).split("x")) if size else 1)
  elif i.op in ("all-reduce", "all-reduce-start"):  # the reducer once per element
    other = out
  elif i.op == "reduce":  # the reducer once per input element
    other = sum(_elements(shapes.get(o, [])) for o in i.operands[: len(i.operands) // 2])
  if i.op in ("reduce", "reduce-window", "scatter", "select-and-scatter", "all-reduce",
              "all-reduce-start", "reduce-scatter", "sort", "map"):  # fmt: skip
    return mm, other, trans  # their scalar callees are the per-element work above
  for callee in re.findall(r"(?:calls|to_apply|body|condition)=%([\w.\-]+)", i.attrs):
    a, b, c = _flops(comps, callee, memo)
    mm, other, trans = mm + a, other + b, trans + c
  return mm, other, trans


def _flops(comps, name: str, memo: dict) -> tuple[float, float, float]:
  """``(matmul, other, transcendental)`` FLOPs of computation ``name`` (callees included)."""
  if name not in memo:
    memo[name] = (0.0, 0.0, 0.0)  # guards recursion
    shapes = {i.name: i.arrays for i in comps.get(name, ())}
    total = [0.0, 0.0, 0.0]
    for i in comps.get(name, ()):
      for k, v in enumerate(_instr_flops(comps, i, shapes, memo)):
        total[k] += v
    memo[name] = tuple(total)
  return memo[name]


@dataclasses.dataclass(frozen=True)
class OpCost:
  """One top-level instruction: FLOPs (matmul / other / transcendental), bytes it reads and
  writes, and the JAX op it came from (``metadata op_name``)."""

  name: str
  op: str
  matmul_flops: float
  other_flops: float
  transcendentals: float
  bytes: float
  where: str = ""
  result_bytes: float = 0.0  # of ``bytes``, what the op writes

  @property
  def flops(self) -> float:
    return self.matmul_flops + self.other_flops


def op_costs(text: str) -> list[OpCost]:
  """Per-op costs of a compiled module's entry computation (``compiled.as_text()``); the ops of
  called computations (fusions, library calls) are folded into their caller, collectives are
  included (their bytes are local traffic; their transfer is `collective_seconds`)."""
  comps, entry = parse_module(text)
  shapes = {i.name: i.arrays for i in comps.get(entry, ())}
  memo: dict = {}
  out = []
  for i in comps.get(entry, ()):
    if i.op in _FREE or _ASYNC_DONE.search(i.op):
      continue
    mm, other, trans = _instr_flops(comps, i, shapes, memo)
    result = _nbytes(i.arrays)
    nbytes = result + sum(_nbytes(shapes.get(o, [])) for o in i.operands)
    where = re.search(r'op_name="([^"]*)"', i.attrs)
    out.append(OpCost(i.name, i.op, mm, other, trans, float(nbytes),
                      where.group(1) if where else "", float(result)))  # fmt: skip
  return out


# ---------------------------------------------------------------------------------------------
# Prediction.


def collective_seconds(colls: Iterable[hlo.Collective], link_gbps: float) -> float:
  """Transfer time of ``colls`` per device at ``link_gbps`` (GB/s per device and direction),
  ring algorithms: all-reduce ``2 (n-1)/n`` of its payload, all-gather / reduce-scatter /
  all-to-all ``(n-1)/n``, a permute its payload (``n`` = the group size)."""
  if link_gbps <= 0:
    return 0.0
  total = 0.0
  for c in colls:
    n = len(c.groups[0]) if c.groups else 0
    if c.op == "collective-permute":
      factor = 1.0
    elif n <= 1 and c.groups:
      factor = 0.0
    else:
      n = n or 2
      factor = (2.0 if c.op == "all-reduce" else 1.0) * (n - 1) / n
    total += factor * c.bytes
  return total / (link_gbps * 1e9)


def op_seconds(c: OpCost, device: Device) -> tuple[float, float]:
  """``(compute, memory)`` seconds of one op on ``device``."""
  compute = c.matmul_flops / (device.matmul_tflops * 1e12)
  compute += (c.other_flops + c.transcendentals) / (device.vector_tflops * 1e12)
  return compute, c.bytes / (device.memory_gbps * 1e9)


def predict(
  costs: Sequence[OpCost],
  device: Device,
  *,
  collectives: Sequence[hlo.Collective] = (),
  utilization: float = 1.0,
  group: Callable[[OpCost], str] | None = None,
) -> dict:
  """The roofline prediction of one step: ``seconds`` (ops + collectives, not overlapped,
  divided by ``utilization``), ``ops_seconds``, ``collective_seconds``, the ``compute_bound`` and
  ``memory_bound`` shares of the ops' time, the whole-program bound ``max(F/P, B/BW)`` as
  ``program_bound_seconds``, totals, and ``groups``: predicted seconds, FLOPs and bytes per
  ``group(op)`` (default: one group)."""
  if not 0 < utilization <= 1:
    raise ValueError(f"utilization must be in (0, 1], got {utilization}")
  t_compute = t_memory = 0.0
  per_group: dict[str, dict] = {}
  for c in costs:
    comp, mem = op_seconds(c, device)
    t = max(comp, mem)
    if comp >= mem:
      t_compute += t
    else:
      t_memory += t
    label = group(c) if group else "all"
    g = per_group.setdefault(label, dict(seconds=0.0, flops=0.0, bytes=0.0))
    g["seconds"] += t / utilization
    g["flops"] += c.flops
    g["bytes"] += c.bytes
  ops = t_compute + t_memory
  comm = collective_seconds(collectives, device.link_gbps)
  flops = sum(c.flops for c in costs)
  mm = sum(c.matmul_flops for c in costs)
  trans = sum(c.transcendentals for c in costs)
  nbytes = sum(c.bytes for c in costs)
  program = max(
    mm / (device.matmul_tflops * 1e12) + (flops - mm + trans) / (device.vector_tflops * 1e12),
    nbytes / (device.memory_gbps * 1e9),
  )
  return dict(
    device=dataclasses.asdict(device),
    utilization=utilization,
    seconds=(ops + comm) / utilization,
    ops_seconds=ops / utilization,
    collective_seconds=comm / utilization,
    compute_bound_share=t_compute / ops if ops else 0.0,
    memory_bound_share=t_memory / ops if ops else 0.0,
    program_bound_seconds=program / utilization,
    flops=flops,
    matmul_flops=mm,
    transcendentals=trans,
    bytes=nbytes,
    ops=len(costs),
    groups=dict(sorted(per_group.items(), key=lambda kv: -kv[1]["seconds"])),
  )


def days(step_seconds: float, batch: int, images: float) -> dict:
  """Images/s and days for ``images`` at one step of ``batch`` images per ``step_seconds``."""
  rate = batch / step_seconds if step_seconds > 0 else 0.0
  return dict(images=images, images_per_sec=rate,
              days=images / rate / 86400 if rate else float("inf"))  # fmt: skip
