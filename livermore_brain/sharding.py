"""Device mesh, logical axis rules, and the shardings derived from them.

Parallelism is declared once, as a table from *logical* axis names (what a dimension means) to
*mesh* axes (where it is split), in the spirit of MaxText's ``logical_axis_rules``::

    batch     -> data    # data parallel: every device of a data row sees its slice of the batch
    locations -> model   # untied fields are independent: split them, communication-free
    neurons   -> model   # a dense layer has one location: split its neurons instead
    features, inputs, dense -> replicated

Layers declare logical names (`livermore_brain.layers.rica.param_axes`); everything else derives
`NamedSharding`s from the table. Changing an experiment's parallelism means changing ``rules`` in
its config, not code.

Meshes use *Auto* axes (``jax.sharding.Mesh`` / ``AxisType.Auto``): XLA's SPMD partitioner
propagates shardings from the annotations given here, which is what lets one jitted step serve
any mesh shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "model")

DEFAULT_RULES: tuple[tuple[str, str | None], ...] = (
  ("batch", "data"),
  # RICA (livermore_brain.layers.rica.param_axes)
  ("locations", "model"),
  ("neurons", "model"),
  ("features", None),
  ("inputs", None),
  ("dense", None),
  # flax convnets (livermore_brain.layers.conv_blocks): data parallel, the wide fully connected
  # layers split over model
  ("mlp", "model"),
  ("embed", None),
  ("classes", None),
  ("conv_h", None),
  ("conv_w", None),
  ("conv_in", None),
  ("conv_out", None),
  ("conv_t", None),  # 3-D convolutions' temporal kernel axis (livermore_brain.video)
  # word vectors (livermore_brain.image2vec.skipgram): millions of rows at YFCC100M scale, split
  # over model; their dimension ("embed") replicated
  ("vocab", "model"),
)


def parse_mesh(spec: str | Sequence[int] | None, num_devices: int) -> tuple[int, int]:
  """``"data:2,model:4"`` / ``"2,4"`` / ``(2, 4)`` / ``None`` -> (data, model).

  One axis may be -1 (= all remaining devices); ``None`` or ``""`` means all devices on data.
  """
  if spec is None or spec == "":
    return (num_devices, 1)
  if isinstance(spec, str):
    sizes = {}
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    named = [":" in p for p in parts]
    if len(parts) > len(MESH_AXES) or (any(named) and not all(named)):
      raise ValueError(f"mesh must be 'data:A,model:B' or 'A,B' (two axes), got {spec!r}")
    for i, part in enumerate(parts):
      name, _, val = part.rpartition(":")
      name = name or MESH_AXES[i]
      if name not in MESH_AXES:
        raise ValueError(f"mesh axis {name!r} unknown: use data:A,model:B (got {spec!r})")
      if name in sizes:
        raise ValueError(f"mesh axis {name!r} given twice in {spec!r}")
      try:
        sizes[name] = int(val)
      except ValueError:
        raise ValueError(f"mesh size {val!r} is not an integer (mesh {spec!r})") from None
    dims = [sizes.get(a, 1) for a in MESH_AXES]
  else:
    dims = [int(v) for v in spec]
  if len(dims) != 2:
    raise ValueError(f"mesh must have two axes (data, model), got {spec!r}")
  if dims.count(-1) > 1:
    raise ValueError(f"at most one mesh axis may be -1, got {spec!r}")
  if -1 in dims:
    other = int(np.prod([d for d in dims if d != -1]))
    if other <= 0 or num_devices % other:
      raise ValueError(f"mesh {spec!r}: {other} does not divide the {num_devices} devices")
    dims[dims.index(-1)] = num_devices // other
  if min(dims) <= 0:
    raise ValueError(f"mesh sizes must be positive, got {spec!r}")
  if dims[0] * dims[1] != num_devices:
    raise ValueError(
      f"mesh {spec!r} = {dims[0]}x{dims[1]} = {dims[0] * dims[1]} devices, but "
      f"{num_devices} are available; use sizes whose product is {num_devices} "
      f"(one may be -1)"
    )
  return dims[0], dims[1]


def make_mesh(spec: str | Sequence[int] | None = None, devices=None) -> Mesh:
  """A ``('data', 'model')`` mesh with Auto axes over ``devices`` (default: all)."""
  devices = jax.devices() if devices is None else list(devices)
  d, m = parse_mesh(spec, len(devices))
  try:
    from jax.experimental import mesh_utils

    arr = mesh_utils.create_device_mesh((d, m), devices=devices)
  except Exception:  # odd device counts / CPU: plain reshape is fine
    arr = np.asarray(devices).reshape(d, m)
  return Mesh(arr, MESH_AXES)


def logical_to_spec(axes: Sequence[str | None] | None, rules=DEFAULT_RULES) -> P:
  """Logical axis names -> `PartitionSpec` through ``rules``, by flax's resolver
  (``flax.linen.logical_to_mesh_axes``): rules are tried in order, a mesh axis splits at most
  one dimension, and a later rule for the same name is a fallback used when an earlier one's
  mesh axis is taken (MaxText's convention). Names no rule maps are replicated."""
  if axes is None:
    return P()
  spec = nn.logical_to_mesh_axes(tuple(axes), tuple(rules))
  return P(*spec)


def _is_axes(x) -> bool:
  return isinstance(x, tuple) and all(isinstance(a, (str, type(None))) for a in x)


def named_shardings(mesh: Mesh, axes_tree: Any, rules=DEFAULT_RULES) -> Any:
  """Tree of logical axis tuples -> tree of `NamedSharding`s."""
  return jax.tree.map(
    lambda a: NamedSharding(mesh, logical_to_spec(a, rules)), axes_tree, is_leaf=_is_axes
  )


def variable_shardings(mesh: Mesh, boxed: Any, rules=DEFAULT_RULES) -> Any:
  """`NamedSharding`s of flax variables from their logical axis metadata (`nn.Partitioned`)."""
  return jax.tree.map(
    lambda s: NamedSharding(mesh, logical_to_spec(tuple(s), rules)),
    nn.get_partition_spec(boxed),
    is_leaf=lambda x: isinstance(x, P),
  )


def check_divisible(mesh: Mesh, abstract_tree: Any, shardings_tree: Any, what: str = "") -> None:
  """Raise a clear ValueError when a sharded dimension is not divisible by its mesh axis."""

  def check(path, leaf, sh):
    for dim, (n, ax) in enumerate(zip(leaf.shape, sh.spec)):
      if ax is None:
        continue
      size = mesh.shape[ax]
      if n % size:
        name = jax.tree_util.keystr(path)
        raise ValueError(
          f"{what}{name}: dimension {dim} of size {n} is split over mesh axis '{ax}' of size "
          f"{size}, which does not divide it; choose a '{ax}' size that divides {n}"
        )

  jax.tree_util.tree_map_with_path(check, abstract_tree, shardings_tree)


def constrainer(mesh: Mesh, rules=DEFAULT_RULES):
  """``constrain(x, logical_axes)``: `with_sharding_constraint` through the rules table."""

  def constrain(x, axes):
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, logical_to_spec(axes, rules)))

  constrain.axis_devices = lambda logical: axis_devices(mesh, logical, rules)
  return constrain


def axis_devices(mesh: Mesh, logical: str, rules=DEFAULT_RULES) -> int:
  """How many devices split a dimension named ``logical`` (1: every device holds all of it)."""
  (spec,) = logical_to_spec((logical,), rules)
  names = () if spec is None else (spec,) if isinstance(spec, str) else tuple(spec)
  return int(np.prod([mesh.shape[n] for n in names]))


def batch_sharding(mesh: Mesh, rules=DEFAULT_RULES, ndim: int = 4) -> NamedSharding:
  """A batch-leading array (e.g. images ``(B, H, W, C)``): batch over ``data``, rest replicated."""
  return NamedSharding(mesh, logical_to_spec(("batch",) + (None,) * (ndim - 1), rules))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def rules_from_config(rules) -> tuple[tuple[str, str | None], ...]:
  """Config rules (a sequence of pairs or a ``{logical: mesh}`` mapping) -> rules tuple.

  A mapping value may list fallbacks, ``"model|data"``: split over ``model``, or over ``data``
  when ``model`` already splits another dimension of the same array. Names the config leaves
  out keep their `DEFAULT_RULES` entry (after the config's), so a config written for one family
  still shards another."""
  if rules is None:
    return DEFAULT_RULES
  items = rules.items() if hasattr(rules, "items") else rules
  out = []
  for k, v in items:
    for m in str(v).split("|") if isinstance(v, str) and v else [v]:
      m = None if m in (None, "", "none", "None") else m
      if m is not None and m not in MESH_AXES:
        raise ValueError(
          f"sharding rule {k!r} -> {m!r}: mesh axis must be one of {MESH_AXES} or none"
        )
      out.append((k, m))
  given = {k for k, _ in out}
  return tuple(out) + tuple(r for r in DEFAULT_RULES if r[0] not in given)
