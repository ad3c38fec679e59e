"""Untied locally connected geometry against plain float64 numpy loops.

The reference never calls the library: a location ``l = i * Lw + j`` sees the input pixels
``(i * s + dy, j * s + dx)`` for ``dy < field_h``, ``dx < field_w``, flattened ``(dy, dx, c)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from livermore_brain.layers import geometry as geo
from livermore_brain.models import brain

# (H, W, C, field_h, field_w, stride, location_multiple): overlapping, odd, dense, non-overlapping,
# gaps (uncovered pixels), rectangular; most with padded locations (each geometry costs a compile).
CASES = [
  pytest.param(9, 11, 2, 3, 3, 2, 8, id="9x11_f3_s2_overlap_pad24"),
  pytest.param(9, 11, 2, 3, 3, 2, 1, id="9x11_f3_s2_overlap"),
  pytest.param(7, 7, 3, 7, 7, 1, 1, id="7x7_f7_dense"),
  pytest.param(8, 10, 1, 2, 2, 2, 8, id="8x10_f2_s2_tiling_pad24"),
  pytest.param(9, 8, 2, 2, 2, 3, 4, id="9x8_f2_s3_gaps_pad12"),
  pytest.param(6, 9, 2, 2, 5, 1, 1, id="6x9_f2x5_s1_rect"),
]


# Jitted once per geometry (LocalGeometry is a frozen, hashable dataclass): running the library
# eagerly, op by op, costs seconds.
extract = jax.jit(geo.extract_patches, static_argnums=1)
fold = jax.jit(geo.fold_patches, static_argnums=1)


def _np_grid(h, w, fh, fw, s):
  return (h - fh) // s + 1, (w - fw) // s + 1


def np_extract(x, fh, fw, s, l_pad=None):
  """(H, W, B, C) -> (L_pad, B, fh*fw*C) by explicit loops over locations and offsets."""
  h, w, b, c = x.shape
  lh, lw = _np_grid(h, w, fh, fw, s)
  l_pad = lh * lw if l_pad is None else l_pad
  out = np.zeros((l_pad, b, fh * fw * c), np.float64)
  for i in range(lh):
    for j in range(lw):
      for dy in range(fh):
        for dx in range(fw):
          for ch in range(c):
            out[i * lw + j, :, (dy * fw + dx) * c + ch] = x[i * s + dy, j * s + dx, :, ch]
  return out


def np_fold(p, shape, fh, fw, s):
  """(L_pad, B, D) -> (H, W, B, C): every location adds its field back; padding ignored."""
  h, w, b, c = shape
  lh, lw = _np_grid(h, w, fh, fw, s)
  out = np.zeros(shape, np.float64)
  for i in range(lh):
    for j in range(lw):
      for dy in range(fh):
        for dx in range(fw):
          for ch in range(c):
            out[i * s + dy, j * s + dx, :, ch] += p[i * lw + j, :, (dy * fw + dx) * c + ch]
  return out


def _geometry(h, w, c, fh, fw, s, multiple=1):
  return geo.LocalGeometry(h, w, c, fh, fw, s, location_multiple=multiple, name="g")


@pytest.mark.parametrize("h,w,c,fh,fw,s,multiple", CASES)
def test_extract_matches_loops(h, w, c, fh, fw, s, multiple):
  g = _geometry(h, w, c, fh, fw, s, multiple)
  x = np.random.default_rng(0).standard_normal((h, w, 3, c)).astype(np.float32)
  got = np.asarray(extract(jnp.asarray(x), g))
  assert got.shape == (g.padded_locations, 3, g.dim)
  assert g.padded_locations % multiple == 0 and g.padded_locations >= g.num_locations
  want = np_extract(x.astype(np.float64), fh, fw, s, g.padded_locations)
  np.testing.assert_array_equal(got, want.astype(np.float32))  # pure copies: bit exact
  assert not np.any(got[g.num_locations :]), "padded locations must see zero patches"


@pytest.mark.parametrize("h,w,c,fh,fw,s,multiple", CASES)
def test_fold_matches_loops(h, w, c, fh, fw, s, multiple):
  g = _geometry(h, w, c, fh, fw, s, multiple)
  rng = np.random.default_rng(1)
  p = rng.standard_normal((g.padded_locations, 2, g.dim)).astype(np.float32)
  got = np.asarray(fold(jnp.asarray(p), g))
  want = np_fold(p.astype(np.float64), (h, w, 2, c), fh, fw, s)  # padded rows are ignored
  assert got.shape == (h, w, 2, c)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  # Pixels no field covers come back as exact zeros.
  ch, cw = g.coverage
  assert not np.any(got[ch:]) and not np.any(got[:, cw:])


def test_fold_counts_overlaps():
  """Folding all-ones patches gives how many fields cover each pixel."""
  g = _geometry(9, 11, 1, 3, 3, 2)
  counts = np.asarray(fold(jnp.ones((g.padded_locations, 1, g.dim)), g))[..., 0, 0]
  want = np.zeros((9, 11))
  lh, lw = g.grid
  for i in range(lh):
    for j in range(lw):
      want[2 * i : 2 * i + 3, 2 * j : 2 * j + 3] += 1
  np.testing.assert_array_equal(counts, want)
  assert counts.max() == 4  # corners shared by four fields


@pytest.mark.parametrize("h,w,c,fh,fw,s,multiple", CASES)
def test_fold_is_adjoint_of_extract(h, w, c, fh, fw, s, multiple):
  """<extract(x), p> == <x, fold(p)> for random x and p (padded rows of p included)."""
  g = _geometry(h, w, c, fh, fw, s, multiple)
  rng = np.random.default_rng(2)
  x = rng.standard_normal((h, w, 2, c)).astype(np.float32)
  p = rng.standard_normal((g.padded_locations, 2, g.dim)).astype(np.float32)
  lhs = np.vdot(np.asarray(extract(jnp.asarray(x), g), np.float64), p)
  rhs = np.vdot(x.astype(np.float64), np.asarray(fold(jnp.asarray(p), g), np.float64))
  scale = np.linalg.norm(x) * np.linalg.norm(p)
  assert abs(lhs - rhs) <= 1e-6 * scale


def test_geometry_properties():
  g = _geometry(9, 11, 2, 3, 3, 2, multiple=8)
  assert g.grid == (4, 5)
  assert g.num_locations == 20 and g.padded_locations == 24
  assert g.dim == 18 and not g.is_dense
  assert g.coverage == (9, 11)
  np.testing.assert_array_equal(np.asarray(g.location_mask()), [1.0] * 20 + [0.0] * 4)
  gaps = _geometry(9, 8, 2, 2, 2, 3)
  assert gaps.grid == (3, 3) and gaps.coverage == (8, 8)  # last row is never seen
  dense = _geometry(7, 7, 3, 7, 7, 1, multiple=8)
  assert dense.is_dense and dense.dim == 147 and dense.padded_locations == 8


def test_to_grid_is_location_major_row_major():
  g = _geometry(9, 11, 2, 3, 3, 2, multiple=8)
  z = np.random.default_rng(3).standard_normal((g.padded_locations, 2, 5)).astype(np.float32)
  grid = np.asarray(geo.to_grid(jnp.asarray(z), g))
  lh, lw = g.grid
  assert grid.shape == (lh, lw, 2, 5)
  for i in range(lh):
    for j in range(lw):
      np.testing.assert_array_equal(grid[i, j], z[i * lw + j])


def test_extract_is_jittable_and_shape_checked():
  g = _geometry(9, 11, 2, 3, 3, 2)
  x = jnp.ones((9, 11, 4, 2))
  np.testing.assert_array_equal(extract(x, g), 1.0)
  with pytest.raises(ValueError, match=r"g: expected input .*\(9, 11, 2\), got \(9, 11, 3\)"):
    geo.extract_patches(jnp.ones((9, 11, 4, 3)), g)


# ------------------------------------------------------------------------------------------------
# Bad geometry: a clear ValueError naming the layer and the numbers, at construction.


def _net(*, input_shape=(16, 16, 3), **layer):
  layer = {"name": "layer1", "features": 8, "field": 4, "stride": 2, "lcn_size": 3, **layer}
  return brain.NetworkSpec(input_shape, (brain.LayerSpec(**layer),))


def test_field_larger_than_input():
  with pytest.raises(ValueError, match=r"layer1: receptive field 20x20 is larger than .*16x16x3"):
    _net(field=20)
  with pytest.raises(ValueError, match=r"conv: receptive field 5x3 is larger than .*4x9x1"):
    geo.LocalGeometry(4, 9, 1, 5, 3, 1, name="conv")


def test_larger_field_in_a_later_layer_names_that_layer():
  layers = (
    brain.LayerSpec("layer1", features=4, field=4, stride=4, lcn_size=1),  # -> 4x4x4
    brain.LayerSpec("layer2", features=4, field=5, lcn_size=1),
  )
  with pytest.raises(ValueError, match=r"layer2: receptive field 5x5 is larger than .*4x4x4"):
    brain.NetworkSpec((16, 16, 3), layers)


@pytest.mark.parametrize("stride", [0, -2])
def test_bad_stride(stride):
  with pytest.raises(ValueError, match=rf"layer1: stride must be a positive integer, got {stride}"):
    _net(stride=stride)


@pytest.mark.parametrize("features", [0, -3])
def test_bad_features(features):
  with pytest.raises(ValueError, match=rf"layer1: features must be .*positive.*got {features}"):
    _net(features=features)


def test_negative_field():
  with pytest.raises(ValueError, match=r"layer1: field must be >= 0 .*got -2"):
    _net(field=-2)


def test_bad_mode():
  with pytest.raises(ValueError, match=r"layer1: mode must be one of .*got 'pixel'"):
    _net(mode="pixel")


def test_lcn_valid_window_larger_than_grid():
  # 16x16 input, field 4 stride 4 -> a 4x4 grid; an 8x8 'valid' LCN window cannot fit.
  with pytest.raises(ValueError, match=r"layer1: LCN window 8 does not fit its 4x4 output grid"):
    _net(stride=4, lcn_size=8, lcn_padding="valid")


def test_bad_lcn_padding():
  with pytest.raises(ValueError, match=r"layer1: lcn_padding must be one of"):
    _net(lcn_padding="reflect")


@pytest.mark.parametrize(
  "args,match",
  [
    ((0, 9, 1, 1, 1, 1), r"g: input height must be a positive integer, got 0"),
    ((4, 9, 0, 1, 1, 1), r"g: input channels must be a positive integer, got 0"),
    ((4, 9, 1, -1, 1, 1), r"g: field height must be a positive integer, got -1"),
    ((4, 9, 1, 2, 0, 1), r"g: field width must be a positive integer, got 0"),
    ((4, 9, 1, 2, 2, 1.5), r"g: stride must be a positive integer, got 1.5"),
  ],
)
def test_local_geometry_rejects(args, match):
  with pytest.raises(ValueError, match=match):
    geo.LocalGeometry(*args, name="g")


def test_bad_location_multiple_and_network():
  with pytest.raises(ValueError, match=r"g: location_multiple must be a positive integer, got 0"):
    geo.LocalGeometry(4, 4, 1, 2, 2, 1, location_multiple=0, name="g")
  with pytest.raises(ValueError, match=r"input_shape must be \(H, W, C\) positive"):
    brain.NetworkSpec((16, 0, 3), (brain.LayerSpec("layer1", features=4),))
  with pytest.raises(ValueError, match=r"at least one layer"):
    brain.NetworkSpec((16, 16, 3), ())


def test_sample_locations_spread_over_both_grid_directions():
  g = geo.LocalGeometry(64, 64, 3, 12, 12, 4)  # the cpu preset's 14x14 layer-1 grid
  locs = geo.sample_locations(g, 16)
  rows, cols = np.divmod(locs, 14)
  assert len(locs) == 16 and len(set(locs.tolist())) == 16
  assert sorted(set(rows.tolist())) == [0, 4, 9, 13] == sorted(set(cols.tolist()))
  assert {0, 13, 182, 195} <= set(locs.tolist())  # the four corners
  assert geo.sample_locations(geo.LocalGeometry(4, 4, 1, 4, 4, 1), 16).tolist() == [0]  # dense
  few = geo.sample_locations(geo.LocalGeometry(8, 8, 1, 4, 4, 2), 100)  # 3x3 grid, asked for 100
  assert few.tolist() == list(range(9))


@pytest.mark.parametrize("h,w,c,fh,fw,s,multiple", CASES)
def test_extract_without_bands_matches_loops(h, w, c, fh, fw, s, multiple):
  """The gather straight from the map (what a mesh splitting the locations uses) gives the same
  patches as the column-band path and the loops, bit for bit."""
  g = _geometry(h, w, c, fh, fw, s, multiple)
  x = np.random.default_rng(1).standard_normal((h, w, 3, c)).astype(np.float32)
  direct = jax.jit(lambda x: geo.extract_patches(x, g, bands=False))(jnp.asarray(x))
  want = np_extract(x.astype(np.float64), fh, fw, s, g.padded_locations).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(direct), want)
  np.testing.assert_array_equal(np.asarray(extract(jnp.asarray(x), g)), want)
