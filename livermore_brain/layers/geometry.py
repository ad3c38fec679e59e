"""Untied locally connected geometry: a grid of receptive fields over a spatial map.

Feature maps are kept *spatial-major*, ``(H, W, B, C)``, and patches *location-major*,
``(L, B, D)`` with ``D = field_h * field_w * C`` ordered ``(dy, dx, c)``. Location-major data
lets every per-location matmul run as ``einsum('lbd,lkd->lbk')`` without transposing the input,
and lets the ``locations`` axis be split over devices with no data movement. A dense layer is the
special case of one location whose field is the whole map.

Locations may be *padded* to a multiple (``location_multiple``) so that the location axis divides
any model-axis size that divides the multiple; padded locations see zero patches, are masked out of
every cost and are never reported as parameters of the network.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class LocalGeometry:
  """Receptive fields of ``field_h x field_w`` (stride ``stride``) over an (H, W, C) map."""

  in_h: int
  in_w: int
  in_c: int
  field_h: int
  field_w: int
  stride: int
  location_multiple: int = 1
  name: str = "layer"

  def __post_init__(self):
    p = f"{self.name}:"
    for what, v in (
      ("input height", self.in_h),
      ("input width", self.in_w),
      ("input channels", self.in_c),
      ("field height", self.field_h),
      ("field width", self.field_w),
      ("stride", self.stride),
      ("location_multiple", self.location_multiple),
    ):
      if not isinstance(v, int) or v <= 0:
        raise ValueError(f"{p} {what} must be a positive integer, got {v!r}")
    if self.field_h > self.in_h or self.field_w > self.in_w:
      raise ValueError(
        f"{p} receptive field {self.field_h}x{self.field_w} is larger than its input "
        f"{self.in_h}x{self.in_w}x{self.in_c}; use a field of at most {self.in_h}x{self.in_w}"
      )

  @property
  def grid(self) -> tuple[int, int]:
    """(Lh, Lw): number of field positions down and across ('valid' placement)."""
    return (
      (self.in_h - self.field_h) // self.stride + 1,
      (self.in_w - self.field_w) // self.stride + 1,
    )

  @property
  def num_locations(self) -> int:
    """L: real (unpadded) number of locations."""
    return self.grid[0] * self.grid[1]

  @property
  def padded_locations(self) -> int:
    """Locations as stored: L rounded up to ``location_multiple``."""
    m = self.location_multiple
    return int(math.ceil(self.num_locations / m) * m)

  @property
  def dim(self) -> int:
    """D: values in one receptive field."""
    return self.field_h * self.field_w * self.in_c

  @property
  def is_dense(self) -> bool:
    return self.num_locations == 1

  @property
  def coverage(self) -> tuple[int, int]:
    """Input rows/columns actually covered by some field (the rest is cropped off)."""
    lh, lw = self.grid
    return (self.stride * (lh - 1) + self.field_h, self.stride * (lw - 1) + self.field_w)

  def location_mask(self) -> jax.Array:
    """(L_pad,) float mask: 1 for real locations, 0 for padding."""
    return (jnp.arange(self.padded_locations) < self.num_locations).astype(jnp.float32)


def sample_locations(g: LocalGeometry, n: int) -> np.ndarray:
  """About ``n`` real location ids (row-major) spread evenly over the ``Lh x Lw`` grid in both
  directions — what filter figures show (a flat ``linspace`` over ids bunches them in rows)."""
  lh, lw = g.grid
  side = max(1, int(np.ceil(np.sqrt(n))))
  ys = np.unique(np.linspace(0, lh - 1, min(side, lh)).round().astype(int))
  xs = np.unique(np.linspace(0, lw - 1, min(side, lw)).round().astype(int))
  return (ys[:, None] * lw + xs[None, :]).reshape(-1)[:n]


def field_starts(g: LocalGeometry) -> np.ndarray:
  """``(L_pad, 2)`` int32: each field's top row and first column *element* ``x * C`` in a
  ``(B, H, W * C)`` view of the map. Padded locations start at row ``H``: the first row of a
  zero block appended below the map."""
  lh, lw = g.grid
  ly, lx = np.meshgrid(np.arange(lh) * g.stride, np.arange(lw) * g.stride, indexing="ij")
  starts = np.stack([ly.reshape(-1), lx.reshape(-1) * g.in_c], axis=-1)
  pad = g.padded_locations - g.num_locations
  if pad:
    starts = np.concatenate([starts, np.tile([[g.in_h, 0]], (pad, 1))])
  return starts.astype(np.int32)


def band_starts(g: LocalGeometry) -> np.ndarray:
  """``(L_pad, 2)`` int32: each field's column band ``j`` and top row ``y`` in `extract_patches`'
  ``(Lw + 1, B, H, field_w * C)`` bands. Padded locations read band ``Lw``, which is zero."""
  lh, lw = g.grid
  ly, lx = np.meshgrid(np.arange(lh) * g.stride, np.arange(lw), indexing="ij")
  starts = np.stack([lx.reshape(-1), ly.reshape(-1)], axis=-1)
  pad = g.padded_locations - g.num_locations
  if pad:
    starts = np.concatenate([starts, np.tile([[lw, 0]], (pad, 1))])
  return starts.astype(np.int32)


def extract_patches(x: jax.Array, g: LocalGeometry, bands: bool = True) -> jax.Array:
  """Spatial-major map ``(H, W, B, C)`` -> location-major patches ``(L_pad, B, D)``.

  Two steps, both plain copies. First the map is viewed batch-major as ``(B, H, W * C)`` and cut
  into ``Lw`` overlapping column *bands* ``(B, H, field_w * C)``, one per column of locations
  (static slices, plus a zero band that padded locations read). Then one gather with constant
  start indices takes a ``(B, field_h, field_w * C)`` window per location from its band: in a
  band a field's rows are contiguous, so each window is one run of ``field_h * field_w * C``
  values already in ``(B, (dy, dx, c))`` order, and the gather writes ``(L, B, D)`` directly.
  Gathering the windows from the map itself (runs of only ``field_w * C``) took 1.1-1.3x as long
  for the ``cpu`` preset's layer 1 and 1.7-1.8x for its layer 2 on XLA:CPU (docs/scale.md "A lean
  RICA step"); the patches are the same values either way.
  The gather's index axis is the location axis: with patches constrained to ``locations ->
  model`` and the map replicated over ``model``, XLA's SPMD partitioner gathers each device's
  locations locally — no collective and no full-size temporary (strided slices + stack made it
  exchange halos and materialize every patch on every device). Its transpose (`fold_patches`)
  is a scatter-add. But every device builds every band: when the locations are split over
  devices, ``bands=False`` gathers the windows from the ``(B, H, W * C)`` view directly (same
  values; `models.brain` chooses).
  """
  h, w, b, c = x.shape
  if (h, w, c) != (g.in_h, g.in_w, g.in_c):
    raise ValueError(
      f"{g.name}: expected input (H, W, C)=({g.in_h}, {g.in_w}, {g.in_c}), got {(h, w, c)}"
    )
  lw, fw, pad = g.grid[1], g.field_w * c, g.padded_locations > g.num_locations
  rows = jnp.transpose(x, (2, 0, 1, 3)).reshape(b, h, w * c)  # batch-major images come back
  if bands:  # (Lw [+ 1], B, H, field_w * C), windows at (band, row)
    src = [rows[:, :, j * g.stride * c : j * g.stride * c + fw] for j in range(lw)]
    src = jnp.stack(src + ([jnp.zeros((b, h, fw), x.dtype)] if pad else []))
    starts, collapsed, index_map, sizes = band_starts(g), (0,), (0, 2), (1, b, g.field_h, fw)
  else:  # (B, H [+ field_h], W * C), windows at (row, column element)
    src = jnp.concatenate([rows, jnp.zeros((b, g.field_h, w * c), x.dtype)], 1) if pad else rows
    starts, collapsed, index_map, sizes = field_starts(g), (), (1, 2), (b, g.field_h, fw)
  dims = jax.lax.GatherDimensionNumbers(
    offset_dims=(1, 2, 3), collapsed_slice_dims=collapsed, start_index_map=index_map
  )
  p = jax.lax.gather(
    src,
    jnp.asarray(starts),
    dims,
    slice_sizes=sizes,
    mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS,
  )  # (L_pad, B, field_h, field_w * C)
  return p.reshape(starts.shape[0], b, g.dim)


def fold_patches(p: jax.Array, g: LocalGeometry) -> jax.Array:
  """Adjoint of `extract_patches`: ``(L_pad, B, D)`` -> ``(H, W, B, C)``, overlaps summed.

  Padded locations are dropped. Input pixels that no field covers come back as zeros.
  """
  b = p.shape[1]
  zeros = jnp.zeros((g.in_h, g.in_w, b, g.in_c), p.dtype)
  (out,) = jax.linear_transpose(lambda x: extract_patches(x, g), zeros)(p)
  return out


def to_grid(z: jax.Array, g: LocalGeometry) -> jax.Array:
  """Per-location outputs ``(L_pad, B, K)`` -> spatial-major map ``(Lh, Lw, B, K)``."""
  lh, lw = g.grid
  return z[: g.num_locations].reshape(lh, lw, *z.shape[1:])
