"""The RICA brain: a stack of RICA layers with LCN between them (Ni et al. 2015, Fig. 2).

A `NetworkSpec` is pure geometry: from the input shape and per-layer `LayerSpec`s it propagates
every shape, counts parameters and FLOPs, and builds the functions training needs. Nothing here
allocates until `init` is called; `abstract_params` is `jax.eval_shape(init)`, which is what the
sharded initializer and the scale planner use.

Data flow for layer ``i`` (maps are spatial-major ``(H, W, B, C)``)::

    map_i --extract--> patches (L_i, B, D_i) --alpha W--> z (L_i, B, K_i)
          --to_grid--> (Lh_i, Lw_i, B, K_i) --LCN--> map_{i+1}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from livermore_brain.layers import geometry as geo
from livermore_brain.layers import lcn as lcn_lib
from livermore_brain.layers import rica


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One RICA layer. ``field=0`` means a dense layer (one field covering the whole input)."""

  name: str
  features: int
  field: int = 0
  stride: int = 1
  lam: float = 0.1
  eps: float = 1e-2
  mode: str = "patch"
  lcn_size: int = 5
  lcn_padding: str = "same"
  pool_group: int = 1  # L2-pool groups of this many neighbouring features (1: no pooling stage)

  @property
  def out_features(self) -> int:
    """Features per location of the layer's output map (after the optional pooling stage)."""
    return self.features // self.pool_group


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
  """Input shape plus layers; shapes propagate through `geometries`."""

  input_shape: tuple[int, int, int]  # (H, W, C)
  layers: tuple[LayerSpec, ...]
  location_multiple: int = 1

  def __post_init__(self):
    object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
    object.__setattr__(self, "layers", tuple(self.layers))
    if len(self.input_shape) != 3 or min(self.input_shape) <= 0:
      raise ValueError(f"input_shape must be (H, W, C) positive, got {self.input_shape}")
    if not self.layers:
      raise ValueError("a network needs at least one layer")
    _ = self.geometries  # validate eagerly: bad geometry fails at construction, naming the layer

  @property
  def geometries(self) -> tuple[geo.LocalGeometry, ...]:
    out = []
    h, w, c = self.input_shape
    for spec in self.layers:
      if spec.features <= 0:
        raise ValueError(f"{spec.name}: features must be a positive integer, got {spec.features}")
      if spec.mode not in rica.MODES:
        raise ValueError(f"{spec.name}: mode must be one of {rica.MODES}, got {spec.mode!r}")
      if spec.pool_group < 1 or spec.features % spec.pool_group:
        raise ValueError(
          f"{spec.name}: pool_group must be >= 1 and divide features={spec.features}, "
          f"got {spec.pool_group}"
        )
      if spec.field < 0:
        raise ValueError(f"{spec.name}: field must be >= 0 (0 = dense), got {spec.field}")
      fh, fw = (h, w) if spec.field == 0 else (spec.field, spec.field)
      g = geo.LocalGeometry(
        h,
        w,
        c,
        fh,
        fw,
        spec.stride if spec.field else 1,
        location_multiple=1 if spec.field == 0 else self.location_multiple,
        name=spec.name,
      )
      out.append(g)
      lh, lw = g.grid
      if spec.lcn_padding not in lcn_lib.PADDINGS:
        raise ValueError(
          f"{spec.name}: lcn_padding must be one of {lcn_lib.PADDINGS}, got {spec.lcn_padding!r}"
        )
      if spec.lcn_padding == "valid" and spec.lcn_size > min(lh, lw):
        raise ValueError(
          f"{spec.name}: LCN window {spec.lcn_size} does not fit its "
          f"{lh}x{lw} output grid with lcn_padding='valid'"
        )
      h = lcn_lib.output_size(lh, spec.lcn_size, spec.lcn_padding)
      w = lcn_lib.output_size(lw, spec.lcn_size, spec.lcn_padding)
      c = spec.out_features
    return tuple(out)

  @property
  def num_layers(self) -> int:
    return len(self.layers)

  def output_shape(self, i: int) -> tuple[int, int, int]:
    """Shape (H, W, K) of layer ``i``'s normalized output map (the next layer's input)."""
    g, s = self.geometries[i], self.layers[i]
    lh, lw = g.grid
    return (
      lcn_lib.output_size(lh, s.lcn_size, s.lcn_padding),
      lcn_lib.output_size(lw, s.lcn_size, s.lcn_padding),
      s.out_features,
    )

  def param_counts(self) -> list[int]:
    """Trainable parameters per layer (real locations only): K*D + 1 + D per location."""
    return [
      g.num_locations * (s.features * g.dim + 1 + g.dim)
      for g, s in zip(self.geometries, self.layers)
    ]

  def flops_per_image(self) -> list[int]:
    """Forward + backward matmul FLOPs of one training example, per layer (2 flops per MAC;
    encode and decode forward, and twice that backward: ~6 * L * K * D)."""
    return [6 * g.num_locations * s.features * g.dim for g, s in zip(self.geometries, self.layers)]

  def summary(self) -> str:
    rows = [
      f"{'layer':<8}{'input':>16}{'field/stride':>14}{'grid':>10}{'K':>6}{'D':>8}"
      f"{'params':>17}{'GFLOP/img':>11}"
    ]
    h, w, c = self.input_shape
    for i, (g, s) in enumerate(zip(self.geometries, self.layers)):
      fs = "dense" if s.field == 0 else f"{s.field}/{s.stride}"
      rows.append(
        f"{s.name:<8}{f'{g.in_h}x{g.in_w}x{g.in_c}':>16}{fs:>14}"
        f"{f'{g.grid[0]}x{g.grid[1]}':>10}{s.features:>6}{g.dim:>8}"
        f"{self.param_counts()[i]:>17,}{self.flops_per_image()[i] / 1e9:>11.3f}"
      )
    rows.append(
      f"{'total':<8}{'':>64}{sum(self.param_counts()):>17,}"
      f"{sum(self.flops_per_image()) / 1e9:>11.3f}"
    )
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------
# Pure functions over params = tuple of per-layer RICA param dicts.


def init(key: jax.Array, spec: NetworkSpec, dtype=jnp.float32) -> tuple[dict, ...]:
  keys = jax.random.split(key, spec.num_layers)
  return tuple(
    rica.init(k, g, s.features, dtype) for k, g, s in zip(keys, spec.geometries, spec.layers)
  )


def abstract_params(spec: NetworkSpec, dtype=jnp.float32):
  """Shapes and dtypes of `init`'s output; allocates nothing."""
  return jax.eval_shape(lambda k: init(k, spec, dtype), jax.random.key(0))


def param_axes(spec: NetworkSpec) -> tuple[dict, ...]:
  return tuple(rica.param_axes(g) for g in spec.geometries)


def images_to_map(images: jax.Array) -> jax.Array:
  """Batch-major images ``(B, H, W, C)`` -> spatial-major map ``(H, W, B, C)``."""
  return jnp.transpose(images, (1, 2, 0, 3))


def layer_encode(params: dict, x_map: jax.Array, spec: NetworkSpec, i: int, constrain=None):
  """Layer ``i``'s features ``z = alpha W x`` on its grid ``(Lh, Lw, B, K)``, before LCN (with a
  pooling stage, ``pool_group > 1``: the L2-pooled units, ``K / pool_group`` of them)."""
  g, s = spec.geometries[i], spec.layers[i]
  patches = geo.extract_patches(x_map, g, bands=_bands(constrain))
  if constrain is not None:
    patches = constrain(patches, ("locations" if not g.is_dense else "dense", "batch", None))
  z = rica.encode(params, patches)
  if s.pool_group > 1:
    z = rica.pool(z, s.pool_group, s.eps)
  return geo.to_grid(z, g)


def layer_output(
  params: dict, x_map: jax.Array, spec: NetworkSpec, i: int, constrain=None
) -> jax.Array:
  """Layer ``i``'s normalized output map from its input map: encode -> grid -> LCN."""
  s = spec.layers[i]
  z = layer_encode(params, x_map, spec, i, constrain)
  return lcn_lib.lcn(z, s.lcn_size, padding=s.lcn_padding)


def forward(
  params: Sequence[dict],
  images: jax.Array,
  spec: NetworkSpec,
  num_layers: int | None = None,
  constrain=None,
) -> list[jax.Array]:
  """Input maps of layers ``0..n``: ``[map_0 (the images), map_1, ..., map_n]``."""
  n = spec.num_layers if num_layers is None else num_layers
  maps = [images_to_map(images)]
  for i in range(n):
    maps.append(layer_output(params[i], maps[-1], spec, i, constrain))
  return maps


def _bands(constrain) -> bool:
  """Cut patches from column bands (`geometry.extract_patches`) when every device holds all
  locations (no mesh, or ``locations`` not split): split over ``model``, each device would build
  the bands of every location from its replicated map (the paper plan: 3x the "other" bytes)."""
  f = getattr(constrain, "axis_devices", None)
  return constrain is None or (f is not None and f("locations") == 1)


def layer_cost(params: dict, x_map: jax.Array, spec: NetworkSpec, i: int, constrain=None):
  """RICA cost of layer ``i`` on its input map; returns ``(loss, terms)``."""
  g, s = spec.geometries[i], spec.layers[i]
  patches = geo.extract_patches(x_map, g, bands=_bands(constrain))
  if constrain is not None:
    patches = constrain(patches, ("locations" if not g.is_dense else "dense", "batch", None))
  image = x_map[: g.coverage[0], : g.coverage[1]] if s.mode == "image" else None
  if image is not None and image.shape[:2] != (g.in_h, g.in_w):
    image = jnp.pad(
      image, ((0, g.in_h - image.shape[0]), (0, g.in_w - image.shape[1]), (0, 0), (0, 0))
    )
  return rica.cost(
    params, patches, g, lam=s.lam, eps=s.eps, mode=s.mode, image=image, pool_group=s.pool_group
  )
