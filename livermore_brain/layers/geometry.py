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


def extract_patches(x: jax.Array, g: LocalGeometry) -> jax.Array:
  """Spatial-major map ``(H, W, B, C)`` -> location-major patches ``(L_pad, B, D)``.

  Built from ``field_h * field_w`` strided slices (no gather), so it lowers to cheap copies and
  its transpose (``fold_patches``) to strided pads and adds.
  """
  h, w, b, c = x.shape
  if (h, w, c) != (g.in_h, g.in_w, g.in_c):
    raise ValueError(
      f"{g.name}: expected input (H, W, C)=({g.in_h}, {g.in_w}, {g.in_c}), got {(h, w, c)}"
    )
  lh, lw = g.grid
  s = g.stride
  cols = []
  for dy in range(g.field_h):
    for dx in range(g.field_w):
      cols.append(
        jax.lax.slice(
          x, (dy, dx, 0, 0), (dy + s * (lh - 1) + 1, dx + s * (lw - 1) + 1, b, c), (s, s, 1, 1)
        )
      )
  p = jnp.stack(cols, axis=3)  # (Lh, Lw, B, fh*fw, C)
  p = p.reshape(lh * lw, b, g.dim)
  pad = g.padded_locations - g.num_locations
  if pad:
    p = jnp.concatenate([p, jnp.zeros((pad, b, g.dim), p.dtype)], axis=0)
  return p


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
