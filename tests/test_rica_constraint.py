"""RICA initialization, parameter axes and the unit-norm constraint (kept exact by projection)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from livermore_brain.layers import geometry as geo
from livermore_brain.layers import rica

_extract = jax.jit(geo.extract_patches, static_argnums=1)
_init = jax.jit(rica.init, static_argnums=(1, 2))


def _row_norms(w):
  return np.linalg.norm(np.asarray(w, np.float64), axis=-1)


def norms_of(a):
  return np.linalg.norm(a, axis=-1, keepdims=True)


def test_init_shapes_and_constraint():
  g = geo.LocalGeometry(9, 11, 2, 3, 3, 2, location_multiple=8, name="g")
  p = _init(jax.random.key(0), g, 6)
  assert p["w"].shape == (24, 6, 18) and p["alpha"].shape == (24,) and p["b"].shape == (24, 18)
  norms = _row_norms(p["w"])
  np.testing.assert_allclose(norms[: g.num_locations], 1.0, atol=1e-6)
  assert not np.any(np.asarray(p["w"][g.num_locations :])), "padded filters must be zero"
  np.testing.assert_array_equal(p["alpha"], 1.0)
  np.testing.assert_array_equal(p["b"], 0.0)


@pytest.mark.parametrize("features", [0, -1])
def test_init_rejects_bad_features(features):
  g = geo.LocalGeometry(4, 4, 1, 2, 2, 2, name="layer7")
  with pytest.raises(
    ValueError, match=rf"layer7: features must be a positive integer, got {features}"
  ):
    rica.init(jax.random.key(0), g, features)


def test_project():
  rng = np.random.default_rng(0)
  w = rng.standard_normal((4, 5, 9)) * rng.uniform(1e-3, 1e3, (4, 5, 1))
  w[3] = 0.0
  w[1, 2] = 0.0
  project = jax.jit(rica.project)
  p = np.asarray(project(jnp.asarray(w, jnp.float32)))
  norms = _row_norms(p)
  np.testing.assert_allclose(np.delete(norms[:3].ravel(), 7), 1.0, atol=1e-6)  # [1, 2] is zero
  assert not np.any(p[3]) and not np.any(p[1, 2]), "zero rows stay zero (no NaN)"
  np.testing.assert_allclose(p[0], w[0] / norms_of(w[0]), rtol=1e-5)  # direction kept
  np.testing.assert_allclose(project(jnp.asarray(p)), p, atol=1e-7)  # idempotent


def test_adam_steps_then_project_keep_unit_norm():
  g = geo.LocalGeometry(9, 11, 2, 3, 3, 2, location_multiple=8, name="g")
  params = _init(jax.random.key(0), g, 6)
  image = jnp.asarray(np.random.default_rng(1).standard_normal((9, 11, 8, 2)), jnp.float32)
  x = _extract(image, g)
  opt = optax.adam(3e-2)

  @jax.jit
  def step(params, state):
    (loss, _), grads = jax.value_and_grad(
      lambda p: rica.cost(p, x, g, lam=0.1, eps=1e-2), has_aux=True
    )(params)
    updates, state = opt.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    return {**params, "w": rica.project(params["w"])}, state, loss

  state = opt.init(params)
  losses = []
  for _ in range(6):
    params, state, loss = step(params, state)
    losses.append(float(loss))
    norms = _row_norms(params["w"])
    np.testing.assert_allclose(norms[: g.num_locations], 1.0, atol=1e-6)
    assert not np.any(np.asarray(params["w"][g.num_locations :])), "padded rows stay zero"
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_param_axes():
  untied = geo.LocalGeometry(9, 11, 2, 3, 3, 2, location_multiple=8, name="g")
  dense = geo.LocalGeometry(4, 4, 8, 4, 4, 1, name="g")
  assert rica.param_axes(untied)["w"] == ("locations", "features", "inputs")
  assert rica.param_axes(dense) == {
    "w": ("dense", "neurons", "inputs"),
    "alpha": ("dense",),
    "b": ("dense", "inputs"),
  }
  p = _init(jax.random.key(0), untied, 6)
  axes = rica.param_axes(untied)
  assert all(len(axes[n]) == p[n].ndim for n in p)
