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


def patch_indices(g: LocalGeometry) -> np.ndarray:
  """``(L_pad, fh * fw)`` int32: flat ``y * W + x`` of every field pixel, ``(dy, dx)`` order.

  Padded locations point at index ``H * W``, one past the map: a zero row appended there.
  """
  lh, lw = g.grid
  ly, lx = np.meshgrid(np.arange(lh) * g.stride, np.arange(lw) * g.stride, indexing="ij")
  dy, dx = np.meshgrid(np.arange(g.field_h), np.arange(g.field_w), indexing="ij")
  rows = ly.reshape(-1, 1) + dy.reshape(1, -1)
  cols = lx.reshape(-1, 1) + dx.reshape(1, -1)
  idx = rows * g.in_w + cols
  pad = g.padded_locations - g.num_locations
  if pad:
    idx = np.concatenate([idx, np.full((pad, idx.shape[1]), g.in_h * g.in_w, idx.dtype)])
  return idx.astype(np.int32)


def extract_patches(x: jax.Array, g: LocalGeometry) -> jax.Array:
  """Spatial-major map ``(H, W, B, C)`` -> location-major patches ``(L_pad, B, D)``.

  One gather of ``(B, C)`` rows with constant indices, written straight into ``(L, B, fh*fw, C)``
  order (no transpose). The gather's index axis is the location axis, so when patches are
  constrained to ``locations -> model`` and the map is replicated over ``model``, XLA's SPMD
  partitioner gathers each device's locations locally: no collective, no full-size temporary
  (strided slices + stack made it exchange halos and materialize every patch on every device).
  Its transpose (``fold_patches``) is a scatter-add.
  """
  h, w, b, c = x.shape
  if (h, w, c) != (g.in_h, g.in_w, g.in_c):
    raise ValueError(
      f"{g.name}: expected input (H, W, C)=({g.in_h}, {g.in_w}, {g.in_c}), got {(h, w, c)}"
    )
  idx = patch_indices(g)
  flat = x.reshape(h * w, b, c)
  if g.padded_locations > g.num_locations:
    flat = jnp.concatenate([flat, jnp.zeros((1, b, c), x.dtype)], axis=0)
  dims = jax.lax.GatherDimensionNumbers(
    offset_dims=(1, 3), collapsed_slice_dims=(0,), start_index_map=(0,)
  )
  p = jax.lax.gather(
    flat,
    jnp.asarray(idx)[..., None],
    dims,
    slice_sizes=(1, b, c),
    mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS,
  )  # (L_pad, B, fh * fw, C)
  return p.reshape(idx.shape[0], b, g.dim)


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
