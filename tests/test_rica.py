"""RICA cost and gradients against a float64 numpy reference with hand-derived gradients.

For one location ``l`` and example ``n`` (paper §3.1, plus the offset ``b``)::

    z = alpha W x,   x_hat = W^T z + b,   r = x_hat - x          (patch mode)
    N * loss = sum_{n, real l} ||r||^2 + lam * sum_{n, real l, k} sqrt(z_k^2 + eps)

In image mode the residual lives on the map: ``R = fold(x_hat) - image`` over the pixels some
field covers, and the reconstruction term is ``||R||^2``; its gradient w.r.t. ``x_hat`` is ``extract(2 R / N)`` (extract is fold's
adjoint). With ``g_r = dloss/dx_hat`` and ``g_z = W g_r + (lam / N) z / sqrt(z^2 + eps)``::

    dW = sum_n z g_r^T + alpha g_z x^T,   dalpha = sum_n g_z . (W x),   db = sum_n g_r

``N = B * L`` counts examples times *real* locations; padded locations contribute nothing.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from livermore_brain.layers import geometry as geo
from livermore_brain.layers import rica
from livermore_brain.models import brain


@pytest.fixture(autouse=True)
def _full_precision_matmuls():
  """float32 matmuls at full precision even on an accelerator (TF32 would miss 1e-5)."""
  with jax.default_matmul_precision("highest"):
    yield


# ------------------------------------------------------------------------------------------------
# Independent float64 reference (explicit loops; no library calls).


def _grid(h, w, fh, fw, s):
  return (h - fh) // s + 1, (w - fw) // s + 1


def np_extract(x, fh, fw, s, l_pad):
  h, w, b, c = x.shape
  lh, lw = _grid(h, w, fh, fw, s)
  out = np.zeros((l_pad, b, fh * fw * c))
  for i in range(lh):
    for j in range(lw):
      for dy in range(fh):
        for dx in range(fw):
          d0 = (dy * fw + dx) * c  # flattened (dy, dx, c)
          out[i * lw + j, :, d0 : d0 + c] = x[i * s + dy, j * s + dx]
  return out


def np_fold(p, shape, fh, fw, s):
  h, w, b, c = shape
  lh, lw = _grid(h, w, fh, fw, s)
  out = np.zeros(shape)
  for i in range(lh):
    for j in range(lw):
      for dy in range(fh):
        for dx in range(fw):
          d0 = (dy * fw + dx) * c
          out[i * s + dy, j * s + dx] += p[i * lw + j, :, d0 : d0 + c]
  return out


def np_rica(params, x, shape, fh, fw, s, *, lam, eps, mode, image=None):
  """Reference ``(loss, rec, sparsity, grads)`` in float64.

  ``x`` holds patches ``(L_pad, B, D)``; ``shape`` is the map's ``(H, W, B, C)``. Only the first
  ``L = Lh * Lw`` locations are real; everything at padded locations is ignored.
  """
  w = np.asarray(params["w"], np.float64)
  alpha = np.asarray(params["alpha"], np.float64)
  b = np.asarray(params["b"], np.float64)
  x = np.asarray(x, np.float64)
  lh, lw = _grid(shape[0], shape[1], fh, fw, s)
  n_loc, batch = lh * lw, x.shape[1]
  norm = batch * n_loc
  z = np.zeros((x.shape[0], batch, w.shape[1]))
  x_hat = np.zeros_like(x)
  for loc in range(n_loc):
    for n in range(batch):
      z[loc, n] = alpha[loc] * (w[loc] @ x[loc, n])
      x_hat[loc, n] = w[loc].T @ z[loc, n] + b[loc]
  sparse = sum(np.sum(np.sqrt(z[loc] ** 2 + eps)) for loc in range(n_loc)) / norm
  if mode == "patch":
    rec = sum(np.sum((x_hat[loc] - x[loc]) ** 2) for loc in range(n_loc)) / norm
    g_r = 2.0 * (x_hat - x) / norm
  else:
    resid = np_fold(x_hat, shape, fh, fw, s) - np.asarray(image, np.float64)
    cov_h = s * ((shape[0] - fh) // s) + fh  # pixels no field covers are not targets
    cov_w = s * ((shape[1] - fw) // s) + fw
    resid[cov_h:], resid[:, cov_w:] = 0.0, 0.0
    rec = np.sum(resid**2) / norm
    g_r = np_extract(2.0 * resid / norm, fh, fw, s, x.shape[0])
  grads = {"w": np.zeros_like(w), "alpha": np.zeros_like(alpha), "b": np.zeros_like(b)}
  for loc in range(n_loc):
    for n in range(batch):
      g_z = w[loc] @ g_r[loc, n] + (lam / norm) * z[loc, n] / np.sqrt(z[loc, n] ** 2 + eps)
      grads["w"][loc] += np.outer(z[loc, n], g_r[loc, n]) + alpha[loc] * np.outer(g_z, x[loc, n])
      grads["alpha"][loc] += g_z @ (w[loc] @ x[loc, n])
      grads["b"][loc] += g_r[loc, n]
  return rec + lam * sparse, rec, sparse, grads


@pytest.mark.parametrize("mode", ["patch", "image"])
def test_reference_gradients_match_finite_differences(mode):
  """The hand-derived float64 gradients are themselves right (no JAX involved)."""
  h, w, c, f, s, l_pad, k = 5, 6, 1, 3, 2, 4, 3  # a 2x2 grid padded to 4 locations
  rng = np.random.default_rng(42)
  image = rng.standard_normal((h, w, 2, c))
  x = np_extract(image, f, f, s, l_pad)
  params = {
    "w": rng.standard_normal((l_pad, k, f * f * c)),
    "alpha": rng.uniform(0.5, 1.5, l_pad),
    "b": rng.standard_normal((l_pad, f * f * c)),
  }
  kw = dict(lam=0.7, eps=1e-2, mode=mode, image=image)
  _, _, _, grads = np_rica(params, x, image.shape, f, f, s, **kw)
  step = 1e-6
  for name in ("w", "alpha", "b"):
    for idx in list(np.ndindex(params[name].shape))[:: max(1, params[name].size // 12)]:
      hi = {n: v.copy() for n, v in params.items()}
      lo = {n: v.copy() for n, v in params.items()}
      hi[name][idx] += step
      lo[name][idx] -= step
      fd = (
        np_rica(hi, x, image.shape, f, f, s, **kw)[0]
        - np_rica(lo, x, image.shape, f, f, s, **kw)[0]
      ) / (2 * step)
      assert abs(fd - grads[name][idx]) <= 1e-6 * (1 + abs(fd)), (name, idx, fd, grads[name][idx])


# ------------------------------------------------------------------------------------------------
# Helpers.


def _random_params(rng, l_pad, k, d):
  """Random params *including* junk at padded locations (which must not matter)."""
  w = rng.standard_normal((l_pad, k, d)) / np.sqrt(d)
  return {
    "w": jnp.asarray(w, jnp.float32),
    "alpha": jnp.asarray(rng.uniform(0.5, 1.5, l_pad), jnp.float32),
    "b": jnp.asarray(0.3 * rng.standard_normal((l_pad, d)), jnp.float32),
  }


_extract = jax.jit(geo.extract_patches, static_argnums=1)  # jitted: eager op-by-op is slow
_init = jax.jit(rica.init, static_argnums=(1, 2))


@functools.partial(jax.jit, static_argnames=("g", "lam", "eps", "mode"))
def _cost_and_grad(params, x, image, g, lam, eps, mode):
  fn = lambda p: rica.cost(p, x, g, lam=lam, eps=eps, mode=mode, image=image)
  return jax.value_and_grad(fn, has_aux=True)(params)


@functools.partial(jax.jit, static_argnames=("spec",))
def _layer_cost_and_grad(params, x_map, spec):
  return jax.value_and_grad(lambda p: brain.layer_cost(p, x_map, spec, 0), has_aux=True)(params)


def _assert_close_scalar(got, want, rtol=1e-5):
  assert abs(float(got) - want) <= rtol * abs(want), (float(got), want)


def _assert_grads_close(got, want, n_real, rtol=1e-5):
  """Per-parameter: ``max |got - want| <= rtol * ||want||_2``; padded locations exactly zero.

  Tolerances are relative to the gradient's *norm*: single entries of a float32 gradient can
  be near zero, where an elementwise rtol is meaningless.
  """
  for name in ("w", "alpha", "b"):
    g = np.asarray(got[name], np.float64)
    err = np.max(np.abs(g[:n_real] - want[name][:n_real]))
    scale = np.linalg.norm(want[name])
    assert scale > 0, name
    assert err <= rtol * scale, f"d/d{name}: max err {err:.3g} vs norm {scale:.3g}"
    assert not np.any(g[n_real:]), f"d/d{name} nonzero at padded locations"


# (H, W, C, field, stride, location_multiple): overlapping + padded, dense, gaps (uncovered).
GEOMS = [
  pytest.param(9, 11, 2, 3, 2, 8, id="9x11_f3_s2_pad24"),
  pytest.param(3, 3, 2, 3, 1, 1, id="3x3_dense"),
  pytest.param(9, 8, 2, 2, 3, 4, id="9x8_f2_s3_gaps_pad12"),
]


@pytest.mark.parametrize("mode", ["patch", "image"])
@pytest.mark.parametrize("h,w,c,f,s,m", GEOMS)
def test_cost_and_grads_match_reference(h, w, c, f, s, m, mode):
  g = geo.LocalGeometry(h, w, c, f, f, s, location_multiple=m, name="g")
  rng = np.random.default_rng([h, w, f, s, len(mode)])
  batch, k, lam, eps = 3, 5, 0.3, 1e-2
  image = rng.standard_normal((h, w, batch, c)).astype(np.float32)
  x = np.array(_extract(jnp.asarray(image), g))
  x_ref = np_extract(image.astype(np.float64), f, f, s, g.padded_locations)
  np.testing.assert_array_equal(x, x_ref.astype(np.float32))
  x[g.num_locations :] = rng.standard_normal(x[g.num_locations :].shape)  # junk: must be masked
  params = _random_params(rng, g.padded_locations, k, g.dim)

  (loss, terms), grads = _cost_and_grad(
    params, jnp.asarray(x), jnp.asarray(image), g, lam, eps, mode
  )
  want, rec, sparse, want_grads = np_rica(
    params, x, image.shape, f, f, s, lam=lam, eps=eps, mode=mode, image=image
  )
  assert loss.dtype == jnp.float32
  _assert_close_scalar(loss, want)
  _assert_close_scalar(terms["reconstruction"], rec)
  _assert_close_scalar(terms["sparsity"], sparse)
  _assert_grads_close(grads, want_grads, g.num_locations)


@pytest.mark.parametrize("mode", ["patch", "image"])
def test_layer_cost_on_a_map_matches_reference(mode):
  """`brain.layer_cost` extracts patches itself; in image mode uncovered pixels are not targets."""
  # 10x12 input, 3x3 fields at stride 2: a 4x5 grid covering 9x11 (last row/column uncovered).
  h, w, c, f, s, k, lam, eps = 10, 12, 2, 3, 2, 4, 0.2, 5e-2
  spec = brain.NetworkSpec(
    (h, w, c),
    (brain.LayerSpec("l1", features=k, field=f, stride=s, lam=lam, eps=eps, mode=mode),),
    location_multiple=8,
  )
  g = spec.geometries[0]
  assert g.coverage == (9, 11) and g.padded_locations == 24
  rng = np.random.default_rng(7)
  x_map = rng.standard_normal((h, w, 3, c)).astype(np.float32)
  params = _random_params(rng, g.padded_locations, k, g.dim)
  (loss, terms), grads = _layer_cost_and_grad(params, jnp.asarray(x_map), spec)

  x_ref = np_extract(x_map.astype(np.float64), f, f, s, g.padded_locations)
  target = x_map.astype(np.float64).copy()
  target[9:], target[:, 11:] = 0.0, 0.0  # no field covers these pixels
  want, rec, sparse, want_grads = np_rica(
    params, x_ref, x_map.shape, f, f, s, lam=lam, eps=eps, mode=mode, image=target
  )
  _assert_close_scalar(loss, want)
  _assert_close_scalar(terms["reconstruction"], rec)
  _assert_close_scalar(terms["sparsity"], sparse)
  _assert_grads_close(grads, want_grads, g.num_locations)


def test_image_mode_default_target_is_exact_for_tiling_fields():
  """``image=None`` rebuilds the map by folding ``x``: exact when fields do not overlap."""
  g = geo.LocalGeometry(8, 8, 1, 2, 2, 2, name="g")
  rng = np.random.default_rng(5)
  image = jnp.asarray(rng.standard_normal((8, 8, 2, 1)), jnp.float32)
  x = _extract(image, g)
  params = _random_params(rng, g.padded_locations, 3, g.dim)
  (got, _), _ = _cost_and_grad(params, x, None, g, 0.1, 1e-2, "image")
  want, *_ = np_rica(params, x, image.shape, 2, 2, 2, lam=0.1, eps=1e-2, mode="image", image=image)
  _assert_close_scalar(got, want)


def test_bad_mode_raises():
  g = geo.LocalGeometry(4, 4, 1, 2, 2, 2, name="enc")
  params = _random_params(np.random.default_rng(0), g.padded_locations, 3, g.dim)
  x = jnp.zeros((g.padded_locations, 2, g.dim))
  with pytest.raises(ValueError, match=r"enc: reconstruction mode must be one of .*got 'pixel'"):
    rica.cost(params, x, g, lam=0.1, eps=1e-2, mode="pixel")


# ------------------------------------------------------------------------------------------------
# Encode / decode semantics.


def test_encode_decode_location_major_einsum():
  rng = np.random.default_rng(3)
  n_loc, b, k, d = 3, 4, 5, 7
  params = _random_params(rng, n_loc, k, d)
  x = rng.standard_normal((n_loc, b, d)).astype(np.float32)
  z = np.asarray(rica.encode(params, jnp.asarray(x)))
  assert z.shape == (n_loc, b, k)
  w, alpha, off = (np.asarray(params[n], np.float64) for n in ("w", "alpha", "b"))
  want_z = np.zeros((n_loc, b, k))
  for li in range(n_loc):
    for bi in range(b):
      for ki in range(k):
        want_z[li, bi, ki] = alpha[li] * sum(w[li, ki, di] * x[li, bi, di] for di in range(d))
  np.testing.assert_allclose(z, want_z, rtol=1e-5, atol=1e-6)

  zz = rng.standard_normal((n_loc, b, k)).astype(np.float32)
  x_hat = np.asarray(rica.decode(params, jnp.asarray(zz)))
  assert x_hat.shape == (n_loc, b, d)
  want_x = np.zeros((n_loc, b, d))
  for li in range(n_loc):
    for bi in range(b):
      for di in range(d):
        want_x[li, bi, di] = off[li, di] + sum(w[li, ki, di] * zz[li, bi, ki] for ki in range(k))
  np.testing.assert_allclose(x_hat, want_x, rtol=1e-5, atol=1e-6)


def test_apply_is_encode_of_extracted_patches():
  g = geo.LocalGeometry(9, 11, 2, 3, 3, 2, location_multiple=8, name="g")
  params = _init(jax.random.key(1), g, 6)
  image = jnp.asarray(np.random.default_rng(2).standard_normal((9, 11, 3, 2)), jnp.float32)
  both = jax.jit(lambda p, im: (rica.apply(p, im, g), rica.encode(p, geo.extract_patches(im, g))))
  z, want = both(params, image)
  assert z.shape == (24, 3, 6)
  np.testing.assert_allclose(z, want, rtol=1e-6)
  assert not np.any(np.asarray(z[g.num_locations :]))  # zero filters and zero patches


def test_bf16_inputs_keep_float32_cost():
  g = geo.LocalGeometry(4, 4, 1, 2, 2, 2, name="g")
  rng = np.random.default_rng(1)
  params = _random_params(rng, g.padded_locations, 3, g.dim)
  x = jnp.asarray(rng.standard_normal((g.padded_locations, 2, g.dim)), jnp.bfloat16)
  (loss, terms), _ = _cost_and_grad(params, x, None, g, 0.1, 1e-2, "patch")
  assert loss.dtype == terms["reconstruction"].dtype == terms["sparsity"].dtype == jnp.float32
  assert jax.jit(rica.encode)(params, x).dtype == jnp.bfloat16


@functools.partial(jax.jit, static_argnames=("g", "reference"))
def _cost_grads_wrt_both(params, x, g, reference):
  """Gradients w.r.t. the parameters and the patches; ``reference``: autodiff's."""
  fn = lambda p, x: rica.cost(p, x, g, lam=0.3, eps=1e-2)
  with rica.autodiff_gradients() if reference else contextlib.nullcontext():
    return jax.value_and_grad(fn, argnums=(0, 1), has_aux=True)(params, x)


def test_hand_written_backward_matches_autodiff():
  """The patch-mode cost's hand-written backward (`rica._patch_cost`: the scales applied after
  the products) against autodiff of the same cost: values bitwise (same forward ops), gradients
  of the parameters *and* of the patches to float32 rounding (sums in another order), padded
  locations exactly zero."""
  g = geo.LocalGeometry(9, 11, 2, 3, 3, 2, location_multiple=8, name="g")
  rng = np.random.default_rng(5)
  x = rng.standard_normal((g.padded_locations, 4, g.dim)).astype(np.float32)  # junk at padding
  params = _random_params(rng, g.padded_locations, 5, g.dim)
  (loss, terms), (grads, dx) = _cost_grads_wrt_both(params, jnp.asarray(x), g, False)
  (loss_r, terms_r), (grads_r, dx_r) = _cost_grads_wrt_both(params, jnp.asarray(x), g, True)
  assert float(loss) == float(loss_r)
  assert {k: float(v) for k, v in terms.items()} == {k: float(v) for k, v in terms_r.items()}
  n = g.num_locations
  _assert_grads_close(grads, {k: np.asarray(v, np.float64) for k, v in grads_r.items()}, n, 1e-6)
  dx, dx_r = np.asarray(dx, np.float64), np.asarray(dx_r, np.float64)
  assert np.max(np.abs(dx - dx_r)) <= 1e-6 * np.linalg.norm(dx_r) and not np.any(dx[n:])


def test_hand_written_backward_trains_like_autodiff():
  """Three Adam updates of a layer (`rica.step.layer_update_fn`, the step's update) with the
  hand-written backward and with autodiff's: the same losses at the first update (bitwise: same
  forward), parameters within 1e-5 after the third (Adam at lr 1e-2 moves each weight ~1e-2 per
  update; the gradients differ by float32 rounding, ~1e-8 of their norm)."""
  import optax

  from livermore_brain.rica import step as step_lib

  spec = brain.NetworkSpec(
    (10, 10, 2), (brain.LayerSpec("l1", features=4, field=4, stride=2, lam=0.3),),
    location_multiple=8,
  )  # fmt: skip
  tx = optax.adam(1e-2)
  rng = np.random.default_rng(3)
  maps = jnp.asarray(rng.standard_normal((3, 10, 10, 4, 2)), jnp.float32)
  out = []
  for reference in (False, True):
    with rica.autodiff_gradients() if reference else contextlib.nullcontext():
      update = jax.jit(step_lib.layer_update_fn(spec, tx, 0))
      params = brain.init(jax.random.key(0), spec)[0]
      opt, losses = tx.init(params), []
      for m in maps:
        params, opt, loss = update(params, opt, m)
        losses.append(float(loss))
    out.append((params, losses))
  (p, losses), (p_ref, losses_ref) = out
  assert losses[0] == losses_ref[0] and np.allclose(losses, losses_ref, rtol=1e-6)
  for k in p:
    np.testing.assert_allclose(p[k], p_ref[k], rtol=0, atol=1e-5, err_msg=k)
