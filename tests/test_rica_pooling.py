"""The optional L2 pooling stage after a RICA layer (Le et al. 2012) against float64 numpy.

With ``pool_group = g`` the K features of a location form K/g groups of g neighbouring features,
``p_j = sqrt(sum_{k in j} z_k^2 + eps)``; the sparsity term is ``sum_j p_j`` (its gradient w.r.t.
``z_k`` is ``z_k / p_{j(k)}``) and the layer outputs the pooled units (then LCN, as always).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from livermore_brain.layers import geometry as geo
from livermore_brain.layers import lcn as lcn_lib
from livermore_brain.layers import rica
from livermore_brain.models import brain, presets


@pytest.fixture(autouse=True)
def _full_precision_matmuls():
  with jax.default_matmul_precision("highest"):
    yield


def np_pool(z, group, eps):
  """Explicit loops over (..., K) -> (..., K / group)."""
  z = np.asarray(z, np.float64)
  k = z.shape[-1]
  flat = z.reshape(-1, k)
  out = np.zeros((flat.shape[0], k // group))
  for r in range(flat.shape[0]):
    for j in range(k // group):
      s = eps
      for q in range(group):
        s += flat[r, j * group + q] ** 2
      out[r, j] = np.sqrt(s)
  return out.reshape(*z.shape[:-1], k // group)


def test_pool_matches_loops_and_group_one_is_elementwise():
  z = np.random.default_rng(0).standard_normal((3, 5, 12)).astype(np.float32)
  for group in (1, 2, 3, 4, 12):
    got = np.asarray(rica.pool(jnp.asarray(z), group, 1e-2))
    np.testing.assert_allclose(got, np_pool(z, group, 1e-2), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(
    rica.pool(jnp.asarray(z), 1, 0.5), np.sqrt(z.astype(np.float64) ** 2 + 0.5), rtol=1e-6
  )
  with pytest.raises(ValueError, match="divide"):
    rica.pool(jnp.asarray(z), 5, 1e-2)


def np_cost(params, x, mask, lam, eps, group):
  """float64 patch-mode cost and its hand-derived gradients, sparsity on pooled units."""
  w, a, b = (np.asarray(params[k], np.float64) for k in ("w", "alpha", "b"))
  x = np.asarray(x, np.float64)
  n = x.shape[1] * mask.sum()
  wx = np.einsum("lbd,lkd->lbk", x, w)
  z = a[:, None, None] * wx
  r = np.einsum("lbk,lkd->lbd", z, w) + b[:, None, :] - x
  p = np_pool(z, group, eps)  # (L, B, K/g)
  m = mask[:, None, None]
  rec = np.sum(m * r**2) / n
  sparse = np.sum(m * p) / n
  g_r = 2 * m * r / n
  p_of_k = np.repeat(p, group, axis=-1)
  g_z = np.einsum("lbd,lkd->lbk", g_r, w) + lam * m * z / p_of_k / n
  dw = np.einsum("lbk,lbd->lkd", z, g_r) + a[:, None, None] * np.einsum("lbk,lbd->lkd", g_z, x)
  da = np.einsum("lbk,lbk->l", g_z, wx)
  db = g_r.sum(1)
  return rec + lam * sparse, rec, sparse, {"w": dw, "alpha": da, "b": db}


@pytest.mark.parametrize("group", [1, 2, 3])
def test_pooled_sparsity_cost_and_gradients_match_reference(group):
  g = geo.LocalGeometry(7, 7, 2, 3, 3, 2, location_multiple=8, name="g")  # 3x3 grid, 9 -> 16
  k, lam, eps = 6, 0.3, 5e-2
  rng = np.random.default_rng(group)
  params = {
    "w": rica.project(jnp.asarray(rng.standard_normal((g.padded_locations, k, g.dim)), jnp.float32))
    * g.location_mask()[:, None, None],
    "alpha": jnp.asarray(rng.uniform(0.5, 1.5, g.padded_locations), jnp.float32),
    "b": jnp.asarray(0.1 * rng.standard_normal((g.padded_locations, g.dim)), jnp.float32),
  }
  image = jnp.asarray(rng.standard_normal((7, 7, 4, 2)), jnp.float32)
  x = geo.extract_patches(image, g)
  fn = lambda p: rica.cost(p, x, g, lam=lam, eps=eps, pool_group=group)
  (loss, terms), grads = jax.value_and_grad(fn, has_aux=True)(params)
  want, rec, sparse, want_grads = np_cost(
    params, x, np.asarray(g.location_mask(), np.float64), lam, eps, group
  )
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)
  np.testing.assert_allclose(float(terms["reconstruction"]), rec, rtol=1e-5)
  np.testing.assert_allclose(float(terms["sparsity"]), sparse, rtol=1e-5)
  for name in ("w", "alpha", "b"):
    np.testing.assert_allclose(np.asarray(grads[name]), want_grads[name], rtol=1e-4, atol=1e-6)


def test_network_with_pooling_stage_outputs_pooled_units():
  """Layer 1 pools 8 features in groups of 2 -> 4 channels; layer 2's fields see 4 channels."""
  spec = brain.NetworkSpec(
    (10, 10, 3),
    (
      brain.LayerSpec("layer1", 8, field=4, stride=2, pool_group=2, lcn_size=3),
      brain.LayerSpec("layer2", 6, field=2, stride=1, lcn_size=1),
    ),
  )
  assert spec.output_shape(0) == (4, 4, 4)
  assert spec.geometries[1].dim == 2 * 2 * 4
  params = brain.init(jax.random.key(0), spec)
  images = jnp.asarray(np.random.default_rng(1).standard_normal((3, 10, 10, 3)), jnp.float32)
  x_map = brain.images_to_map(images)
  got = brain.layer_output(params[0], x_map, spec, 0)
  g = spec.geometries[0]
  z = np.asarray(rica.encode(params[0], geo.extract_patches(x_map, g)))[: g.num_locations]
  pooled = np_pool(z, 2, spec.layers[0].eps).reshape(4, 4, 3, 4)
  want = lcn_lib.lcn(jnp.asarray(pooled, jnp.float32), 3)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)
  maps = brain.forward(params, images, spec)
  assert maps[2].shape == (3, 3, 3, 6)
  with pytest.raises(ValueError, match="pool_group"):
    brain.NetworkSpec((10, 10, 3), (brain.LayerSpec("l", 6, field=4, stride=2, pool_group=4),))


def test_paper_preset_has_no_pooling_stage():
  spec = presets.spec("paper")
  assert all(s.pool_group == 1 for s in spec.layers)
  assert abs(sum(spec.param_counts()) / 15.38e9 - 1) < 0.005
