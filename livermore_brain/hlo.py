"""Collectives in compiled HLO text, attributed to the mesh axes they span.

`parse_collectives` reads every all-reduce / all-gather / reduce-scatter / all-to-all /
collective-permute / collective-broadcast of ``compiled.as_text()`` (their ``replica_groups``, in
explicit or iota form, or ``source_target_pairs``) with the bytes each moves; `collective_axes`
names the mesh axes a collective's groups span and `summarize_collectives` counts them per axis.
Used by the AOT planner (`livermore_brain.planner`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

import numpy as np

COLLECTIVES = (
  "all-reduce all-gather reduce-scatter all-to-all collective-permute collective-broadcast"
)
_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s4": 1, "u4": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2}
_BYTES.update({"s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16})
_INSTR = re.compile(
  r"^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+)\s*=\s*(?P<shape>.+?)\s+"
  r"(?P<op>" + COLLECTIVES.replace(" ", "|") + r")(?P<start>-start)?\((?P<rest>.*)$"
)
_ARRAY = re.compile(r"\b([a-z][a-z0-9]*)\[([0-9,]*)\]")


@dataclasses.dataclass(frozen=True)
class Collective:
  """One collective instruction: its arrays, and who talks to whom (logical device ids)."""

  name: str
  op: str
  arrays: tuple[tuple[str, tuple[int, ...]], ...]  # (dtype, dims) of the result (tuple parts)
  groups: tuple[tuple[int, ...], ...] | None  # None: one group of every device
  is_start: bool = False
  where: str = ""  # the JAX op it came from (``metadata={op_name=...}``)

  @property
  def bytes(self) -> int:
    """Per-device payload: the result (all-reduce, all-gather, all-to-all, permute), or the
    operand for reduce-scatter (result x group size); async ``-start`` ops: largest array."""
    sizes = [_BYTES.get(t, 4) * math.prod(d) for t, d in self.arrays]
    n = (max(sizes) if self.is_start else sum(sizes)) if sizes else 0
    if self.op == "reduce-scatter" and self.groups:
      n *= len(self.groups[0])
    return int(n)

  @property
  def is_scalar(self) -> bool:
    """Every array has at most one element (losses, norms, counters)."""
    return all(math.prod(d) <= 1 for _, d in self.arrays)


def _iota(dims: Sequence[int], perm: Sequence[int] | None) -> np.ndarray:
  a = np.arange(math.prod(dims)).reshape(dims)
  return a.transpose(perm) if perm else a


def _ints(text: str) -> list[int]:
  return [int(v) for v in re.findall(r"-?\d+", text)]


def _balanced(text: str, start: int, open_: str, close: str) -> int:
  """Index just past the bracket that closes ``text[start]`` (which is ``open_``)."""
  depth = 0
  for i in range(start, len(text)):
    depth += text[i] == open_
    depth -= text[i] == close
    if depth == 0:
      return i + 1
  raise ValueError(f"unbalanced {open_}{close} in HLO: {text[start : start + 80]!r}")


def _device_ids(text: str) -> np.ndarray:
  """``[2,4]T(1,0)`` / ``[8]`` (iota, reshaped, transposed) or ``0,2,1,3`` (explicit)."""
  m = re.fullmatch(r"\s*\[([\d,]+)\](?:T\(([\d,]+)\))?\s*", text)
  if m:
    return _iota(_ints(m.group(1)), _ints(m.group(2)) if m.group(2) else None).reshape(-1)
  return np.asarray(_ints(text))


def _mesh_groups(rest: str, at: int) -> list[list[int]]:
  """``mesh['a'=4,'b'=2], device_ids=([2,4]T(1,0)) {'a'}`` -> groups along the named axes."""
  end = _balanced(rest, at + len("mesh"), "[", "]")
  axes = re.findall(r"'([^']+)'=(\d+)", rest[at:end])
  names, sizes = [a for a, _ in axes], [int(s) for _, s in axes]
  tail = rest[end:]
  ids = np.arange(math.prod(sizes))
  m = re.match(r"\s*,\s*device_ids=\(", tail)
  if m:
    close = _balanced(tail, m.end() - 1, "(", ")")
    ids = _device_ids(tail[m.end() : close - 1])
    tail = tail[close:]
  sel = re.match(r"\s*\{([^}]*)\}", tail)
  picked = re.findall(r"'([^']+)'(?::\((\d+)\)(\d+))?", sel.group(1) if sel else "")
  arr, shape, order = ids.reshape(sizes), [], []
  for name, size in zip(names, sizes):  # split sub-axes 'a':(pre)n into (pre, n, rest)
    subs = [(int(p), int(n)) for a, p, n in picked if a == name and p]
    if subs:
      pre, n = subs[0]
      shape += [pre, n, size // (pre * n)]
      order.append(len(shape) - 2)
    else:
      shape.append(size)
      if any(a == name for a, _, _ in picked):
        order.append(len(shape) - 1)
  arr = arr.reshape(shape)
  keep = [d for d in range(arr.ndim) if d not in order]
  return arr.transpose(keep + order).reshape(-1, math.prod(arr.shape[d] for d in order)).tolist()


def parse_groups(rest: str) -> tuple[tuple[int, ...], ...] | None:
  """Groups of logical device ids from the attribute text of one collective instruction."""
  m = re.search(r"source_target_pairs=\{", rest)
  if m:
    body = rest[m.end() - 1 : _balanced(rest, m.end() - 1, "{", "}")]
    return tuple(tuple(_ints(p)) for p in re.findall(r"\{(\d+,\d+)\}", body))
  m = re.search(r"replica_groups=", rest)
  if not m:
    return None
  at = m.end()
  if rest.startswith("mesh", at):
    groups = _mesh_groups(rest, at)
  elif rest.startswith("[", at):  # iota: [G,S]<=[dims]T(perm)
    it = re.match(r"\[(\d+),(\d+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?", rest[at:])
    if not it:
      raise ValueError(f"unrecognized replica_groups: {rest[at : at + 80]!r}")
    perm = _ints(it.group(4)) if it.group(4) else None
    groups = _iota(_ints(it.group(3)), perm).reshape(int(it.group(1)), int(it.group(2))).tolist()
  else:
    body = rest[at : _balanced(rest, at, "{", "}")]
    groups = [_ints(g) for g in re.findall(r"\{([\d,\s]*)\}", body[1:-1])]
  groups = [tuple(g) for g in groups if g]
  return tuple(groups) or None


def parse_collectives(hlo_text: str) -> list[Collective]:
  """Every collective instruction of an HLO module's text (``compiled.as_text()``)."""
  out = []
  for line in hlo_text.splitlines():
    m = _INSTR.match(line)
    if m is None:
      continue
    arrays = tuple(
      (t, tuple(int(v) for v in d.split(",") if v)) for t, d in _ARRAY.findall(m.group("shape"))
    )
    where = re.search(r'op_name="([^"]*)"', m.group("rest"))
    out.append(
      Collective(
        m.group("name"),
        m.group("op"),
        arrays,
        parse_groups(m.group("rest")),
        bool(m["start"]),
        where.group(1) if where else "",
      )
    )
  return out


def collective_axes(c: Collective, mesh_shape: dict[str, int]) -> tuple[str, ...]:
  """Mesh axes along which the devices of ``c``'s groups differ (logical id = row-major index
  into the mesh, which is how ``jit`` numbers a `Mesh`'s devices)."""
  names, dims = list(mesh_shape), list(mesh_shape.values())
  groups = c.groups if c.groups is not None else [tuple(range(math.prod(dims)))]
  varies = set()
  for g in groups:
    coords = np.array(np.unravel_index(np.asarray(g), dims)).T
    varies.update(i for i in range(len(dims)) if len(set(coords[:, i])) > 1)
  return tuple(names[i] for i in sorted(varies))


def summarize_collectives(colls: Sequence[Collective], mesh_shape: dict[str, int]) -> dict:
  """``{axes: {count, bytes, nonscalar_count, nonscalar_bytes, ops}}``; axes key like ``model``
  or ``data+model`` (``none``: groups of one device)."""
  out: dict[str, dict] = {}
  for c in colls:
    key = "+".join(collective_axes(c, mesh_shape)) or "none"
    row = out.setdefault(key, dict(count=0, bytes=0, nonscalar_count=0, nonscalar_bytes=0, ops={}))
    row["count"] += 1
    row["bytes"] += c.bytes
    row["ops"][c.op] = row["ops"].get(c.op, 0) + 1
    if not c.is_scalar:
      row["nonscalar_count"] += 1
      row["nonscalar_bytes"] += c.bytes
  return dict(sorted(out.items()))
