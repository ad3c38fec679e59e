"""Local contrast normalization: a float64 loop reference plus properties.

Reference convention (the library's, per its docstring and code): window offsets
``p = 0..size-1`` sit at ``center + p - (size - 1) // 2``; 'valid' keeps the centers whose
whole window is inside (output ``n - size + 1``), 'same' keeps every center and renormalizes the
weights that fall inside the map. With ``w`` the normalized 2-D Gaussian and features averaged::

    m   = sum_w mean_k x                       (local mean, shared by all K features)
    var = sum_w mean_k (x - m)^2               (variance around the window's own mean)
    y   = (x_center - m) / max(sqrt(var), c, eps),   c = per-image mean of sqrt(var)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from livermore_brain.layers import lcn as lcn_lib

lcn = jax.jit(lcn_lib.lcn, static_argnames=("size", "sigma", "padding", "eps"))


@pytest.fixture(autouse=True)
def _full_precision_convs():
  """float32 convolutions at full precision even on an accelerator (TF32 would miss 1e-4)."""
  with jax.default_matmul_precision("highest"):
    yield


def np_taps(size, sigma=None):
  sigma = sigma if sigma is not None else max(size / 4.0, 0.5)
  r = np.arange(size) - (size - 1) / 2.0
  k = np.exp(-0.5 * (r / sigma) ** 2)
  return k / k.sum()


def np_lcn(x, size, padding, eps=1e-2):
  x = np.asarray(x, np.float64)
  h, w, b, _ = x.shape
  taps = np_taps(size)
  lo = (size - 1) // 2
  if padding == "valid":
    centers_i, centers_j = range(lo, lo + h - size + 1), range(lo, lo + w - size + 1)
  else:
    centers_i, centers_j = range(h), range(w)
  v = np.zeros((len(centers_i), len(centers_j), b, x.shape[3]))
  sd = np.zeros((len(centers_i), len(centers_j), b))
  for oi, ci in enumerate(centers_i):
    for oj, cj in enumerate(centers_j):
      wsum, msum, vals = 0.0, np.zeros(b), []
      for p in range(size):
        for q in range(size):
          yi, xj = ci + p - lo, cj + q - lo
          if 0 <= yi < h and 0 <= xj < w:
            wt = taps[p] * taps[q]
            wsum += wt
            msum += wt * x[yi, xj].mean(axis=-1)
            vals.append((wt, x[yi, xj]))
      m = msum / wsum
      var = sum(wt * ((xv - m[:, None]) ** 2).mean(axis=-1) for wt, xv in vals) / wsum
      v[oi, oj] = x[ci, cj] - m[:, None]
      sd[oi, oj] = np.sqrt(var)
  c = sd.mean(axis=(0, 1))  # per image
  den = np.maximum(np.maximum(sd, c[None, None]), eps)
  return v / den[..., None]


SHAPE = (12, 13, 2, 3)  # one input shape throughout: compiled LCNs are reused across tests


def _rand(shape=SHAPE, seed=0, offset=0.0, scale=1.0):
  x = offset + scale * np.random.default_rng(seed).standard_normal(shape)
  return x.astype(np.float32)


@pytest.mark.parametrize(
  "size,padding",
  [
    (3, "same"),
    (5, "same"),
    (4, "same"),
    (3, "valid"),
    (5, "valid"),
    (8, "valid"),
    (1, "same"),
  ],
)
def test_matches_float64_reference(size, padding):
  x = _rand(seed=size, offset=0.5)
  got = np.asarray(lcn(jnp.asarray(x), size=size, padding=padding))
  want = np_lcn(x, size, padding)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size", [3, 4, 5, 8])
def test_same_interior_equals_valid(size):
  """Away from the border 'same' and 'valid' see the same windows. A huge eps fixes the
  divisor to eps, which removes the (region-dependent) per-image ``c`` from the comparison."""
  x = _rand(seed=1)
  same = np.asarray(lcn(jnp.asarray(x), size=size, padding="same", eps=1e3))
  valid = np.asarray(lcn(jnp.asarray(x), size=size, padding="valid", eps=1e3))
  lo = (size - 1) // 2
  hh, ww = valid.shape[:2]
  np.testing.assert_allclose(same[lo : lo + hh, lo : lo + ww], valid, atol=1e-6)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_zero_mean_and_bounded_variance(padding):
  size = 5
  h, w = SHAPE[:2]
  yy, xx = np.mgrid[0:h, 0:w]
  trend = (4.0 + 0.5 * yy - 0.3 * xx)[:, :, None, None]
  x = (trend + _rand(seed=2)).astype(np.float32)
  y = np.asarray(lcn(jnp.asarray(x), size=size, padding=padding), np.float64)
  assert np.all(np.isfinite(y))
  # Mean removed: the input's mean is ~4; the output's is ~0 (per image too).
  assert abs(x.mean()) > 3
  assert np.all(np.abs(y.mean(axis=(0, 1, 3))) < 0.1), y.mean(axis=(0, 1, 3))
  # Gaussian-weighted local mean of the output (valid windows over its own grid) is small.
  taps = np_taps(size)
  ym = y.mean(axis=-1)
  local = np.zeros((ym.shape[0] - size + 1, ym.shape[1] - size + 1, ym.shape[2]))
  for p in range(size):
    for q in range(size):
      local += taps[p] * taps[q] * ym[p : p + local.shape[0], q : q + local.shape[1]]
  assert np.max(np.abs(local)) < 0.6 and np.sqrt(np.mean(local**2)) < 0.3
  # Bounded: the divisor is >= the local sd, and the center carries weight >= w_c in it, so
  # mean_k y^2 <= 1 / w_c at every position (w_c = center tap of the normalized 2-D window).
  w_c = taps[(size - 1) // 2] ** 2
  assert np.max(np.mean(y**2, axis=-1)) <= 1.0 / w_c * (1 + 1e-5)
  assert 0.3 < np.std(y) < 1.5


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_removes_affine_trends(padding):
  """A locally affine map equals its symmetric local mean: interior output is ~0."""
  h, w = SHAPE[:2]
  yy, xx = np.mgrid[0:h, 0:w]
  x = ((3.0 + 0.7 * yy - 0.2 * xx)[:, :, None, None] * np.ones(SHAPE)).astype(np.float32)
  y = np.asarray(lcn(jnp.asarray(x), size=5, padding=padding))
  interior = y[2:-2, 2:-2] if padding == "same" else y
  assert np.max(np.abs(interior)) < 1e-4


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("value", [0.0, 7.0, -3.5])
def test_constant_input_is_finite_zero(padding, value):
  x = jnp.full(SHAPE, value, jnp.float32)
  y = np.asarray(lcn(x, size=5, padding=padding))
  assert np.all(np.isfinite(y))
  assert np.max(np.abs(y)) < 1e-3


def test_constant_image_next_to_textured_one():
  """``c`` is per image: a flat image in the batch stays ~0 while its neighbor is normalized."""
  x = _rand(seed=4)
  x[:, :, 0] = 2.0
  y = np.asarray(lcn(jnp.asarray(x), size=5, padding="same"))
  assert np.all(np.isfinite(y))
  assert np.max(np.abs(y[:, :, 0])) < 1e-3
  assert np.std(y[:, :, 1]) > 0.3


def test_invariant_to_a_constant_offset():
  x = _rand(seed=5)
  base = np.asarray(lcn(jnp.asarray(x), size=5, padding="same"))
  shifted = np.asarray(lcn(jnp.asarray(x + np.float32(1e3)), size=5, padding="same"))
  # Only the input's own float32 quantization at 1e3 (ulp 6e-5) should show up.
  np.testing.assert_allclose(shifted, base, atol=2e-3)


@pytest.mark.parametrize("size", [1, 3, 8])
def test_valid_shrinks_grid(size):
  x = jnp.asarray(_rand())
  assert lcn(x, size=size, padding="valid").shape == (13 - size, 14 - size, 2, 3)
  assert lcn(x, size=size, padding="same").shape == (12, 13, 2, 3)
  assert lcn_lib.output_size(72, 8, "valid") == 65 and lcn_lib.output_size(72, 8, "same") == 72


def test_bf16_in_bf16_out():
  x = jnp.asarray(_rand((6, 6, 2, 3)), jnp.bfloat16)
  assert lcn(x, size=3).dtype == jnp.bfloat16


def test_invalid_arguments():
  x = jnp.zeros((4, 6, 1, 2))
  with pytest.raises(ValueError, match=r"LCN padding must be one of .*got 'reflect'"):
    lcn_lib.lcn(x, 3, padding="reflect")
  with pytest.raises(ValueError, match=r"LCN window 5 does not fit a 4x6 map with padding='valid'"):
    lcn_lib.lcn(x, 5, padding="valid")
  with pytest.raises(ValueError, match=r"LCN window 0 does not fit a 4x6 map"):
    lcn_lib.lcn(x, 0)
