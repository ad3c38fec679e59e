"""Reconstruction ICA (RICA), pure functions over a params pytree (Ni et al. 2015, §3.1).

For one receptive field ``x`` (D values) a layer with filters ``W`` (K x D), scale ``alpha`` and
offset ``b`` computes::

    z     = alpha * W x                          (encode)
    x_hat = W^T z + b                            (decode, tied weights)
    cost  = ||x_hat - x||^2 + lam * sum_k sqrt(z_k^2 + eps)
    subject to ||W_k||_2 = 1 for every filter row k

Every function takes a leading location axis: ``W`` is ``(L, K, D)``, ``alpha`` ``(L,)``, ``b``
``(L, D)``, inputs ``x`` are location-major patches ``(L, B, D)``. Untied locally connected layers
have one (W, alpha, b) per location; a dense layer is ``L = 1``.

The unit-norm constraint is kept exact by *projection* (`project`, applied after every optimizer
update) rather than by a ``W = V / ||V||`` parametrization: the stored ``W`` is then exactly the
filter bank the network uses, which is what analysis, visualization and checkpoints read, and the
forward pass carries no normalization.

Two reconstruction modes:
  * ``patch`` — each location reconstructs its own field; locations are fully independent, so
    splitting them over devices needs no communication (the paper's §3.2). Default.
  * ``image`` — overlapping reconstructions are summed back onto the input map and compared with
    it (Le et al. 2012); a sharded run pays a halo exchange for the fold.

Optional L2 pooling (Le et al. 2012; Ni et al. 2015 left it out): with ``pool_group = g > 1``
the K features of a location form K/g groups of g neighbouring features, each pooled to
``p_j = sqrt(sum_{k in j} z_k^2 + eps)`` (`pool`), and the sparsity term is ``sum_j p_j`` (with
g = 1 this is the plain ``sum_k sqrt(z_k^2 + eps)``). The layer then outputs the K/g pooled units.
Pooling is local to one location's features, so it shards exactly like the layer itself.

Costs are averaged over the batch and over (real) locations; the reconstruction and sparsity terms
are reported separately, so ``loss = reconstruction + lam * sparsity``.

The patch-mode cost without pooling (every preset's) has a hand-written backward (`_patch_cost`):
the same gradient as autodiff's, with fewer passes over the ``(L, B, D)`` residual (see
`_patch_cost_bwd`); its forward values are bitwise autodiff's, its gradients differ in the last
bits. ``with autodiff_gradients():`` traces autodiff's instead (the reference the tests and
``experiments.benchmark --also_autodiff`` compare with).
"""

from __future__ import annotations

import contextlib
import functools
import threading

import jax
import jax.numpy as jnp

from livermore_brain.layers.geometry import LocalGeometry, extract_patches, fold_patches

MODES = ("patch", "image")


def init(key: jax.Array, g: LocalGeometry, features: int, dtype=jnp.float32) -> dict:
  """Random unit-norm filters, ``alpha = 1``, ``b = 0``. Padded locations get zero filters."""
  if not isinstance(features, int) or features <= 0:
    raise ValueError(f"{g.name}: features must be a positive integer, got {features!r}")
  w = jax.random.normal(key, (g.padded_locations, features, g.dim), dtype)
  w = w * g.location_mask()[:, None, None].astype(dtype)
  return {
    "w": project(w),
    "alpha": jnp.ones((g.padded_locations,), dtype),
    "b": jnp.zeros((g.padded_locations, g.dim), dtype),
  }


def param_axes(g: LocalGeometry) -> dict:
  """Logical axis names for every parameter (see `livermore_brain.sharding`).

  Untied layers split their ``locations``; a dense layer (one location) splits its ``neurons``.
  """
  if g.is_dense:
    return {"w": ("dense", "neurons", "inputs"), "alpha": ("dense",), "b": ("dense", "inputs")}
  return {
    "w": ("locations", "features", "inputs"),
    "alpha": ("locations",),
    "b": ("locations", "inputs"),
  }


def project(w: jax.Array) -> jax.Array:
  """Rescale every filter row of ``(..., K, D)`` to unit L2 norm (zero rows stay zero)."""
  norm = jnp.sqrt(jnp.sum(jnp.square(w), axis=-1, keepdims=True))
  return w / jnp.where(norm > 0, norm, 1.0)


def encode(params: dict, x: jax.Array) -> jax.Array:
  """``z = alpha * W x``: patches ``(L, B, D)`` -> features ``(L, B, K)``."""
  wx = jnp.einsum("lbd,lkd->lbk", x, params["w"].astype(x.dtype))
  return params["alpha"].astype(x.dtype)[:, None, None] * wx


def decode(params: dict, z: jax.Array) -> jax.Array:
  """``x_hat = W^T z + b``: features ``(L, B, K)`` -> patches ``(L, B, D)``."""
  wtz = jnp.einsum("lbk,lkd->lbd", z, params["w"].astype(z.dtype))
  return wtz + params["b"].astype(z.dtype)[:, None, :]


def pool(z: jax.Array, group: int, eps: float) -> jax.Array:
  """L2 pooling of neighbouring features: ``(..., K) -> (..., K / group)``,
  ``sqrt(sum_{k in group} z_k^2 + eps)``; ``group = 1``: ``sqrt(z^2 + eps)``, elementwise."""
  k = z.shape[-1]
  if group < 1 or k % group:
    raise ValueError(f"pool group {group} must be >= 1 and divide the {k} features")
  sq = jnp.square(z.astype(jnp.float32)).reshape(*z.shape[:-1], k // group, group)
  return jnp.sqrt(jnp.sum(sq, axis=-1) + eps).astype(z.dtype)


def cost(
  params: dict,
  x: jax.Array,
  g: LocalGeometry,
  *,
  lam: float,
  eps: float,
  mode: str = "patch",
  image: jax.Array | None = None,
  pool_group: int = 1,
) -> tuple[jax.Array, dict]:
  """RICA cost of patches ``x`` ``(L_pad, B, D)``; returns ``(loss, terms)``.

  ``terms`` holds ``reconstruction`` and ``sparsity`` (so ``loss = rec + lam * sparsity``), each
  a float32 scalar averaged over the batch and the real locations. In ``image`` mode ``image`` is
  the spatial-major input map ``(H, W, B, C)`` that ``x`` was extracted from (it may be omitted
  only for non-overlapping fields, where it is rebuilt from ``x``). Pixels that no field covers
  are not part of the cost. ``pool_group > 1``: the sparsity term sums the L2-pooled units.
  """
  if mode not in MODES:
    raise ValueError(f"{g.name}: reconstruction mode must be one of {MODES}, got {mode!r}")
  if mode == "patch" and pool_group == 1 and not getattr(_AUTODIFF, "on", False):
    rec, sparse = _patch_cost(params["w"], params["alpha"], params["b"], x, g.num_locations, eps)
    return rec + lam * sparse, {"reconstruction": rec, "sparsity": sparse}
  b = x.shape[1]
  mask = g.location_mask().astype(jnp.float32)
  n = jnp.float32(b * g.num_locations)
  z = encode(params, x)
  x_hat = decode(params, z)
  if pool_group > 1:
    sparse = jnp.sum(pool(z.astype(jnp.float32), pool_group, eps), axis=(1, 2))  # (L,)
  else:
    sparse = jnp.sum(jnp.sqrt(jnp.square(z.astype(jnp.float32)) + eps), axis=(1, 2))  # (L,)
  sparse = jnp.sum(sparse * mask) / n
  if mode == "patch":
    err = jnp.sum(jnp.square((x_hat - x).astype(jnp.float32)), axis=(1, 2))  # (L,)
    rec = jnp.sum(err * mask) / n
  else:
    if image is None:
      if g.field_h > g.stride or g.field_w > g.stride:
        raise ValueError(
          f"{g.name}: image mode with overlapping fields needs the input map "
          f"(pass image=...); folding the patches would count overlaps twice"
        )
      image = fold_patches(x, g)
    ch, cw = g.coverage  # pixels no field covers cannot be reconstructed: leave them out
    diff = (fold_patches(x_hat, g) - image)[:ch, :cw]
    rec = jnp.sum(jnp.square(diff.astype(jnp.float32))) / n
  loss = rec + lam * sparse
  return loss, {"reconstruction": rec, "sparsity": sparse}


_AUTODIFF = threading.local()


@contextlib.contextmanager
def autodiff_gradients():
  """Within this block (at trace time) `cost` differentiates by autodiff everywhere: the
  reference for `_patch_cost`'s hand-written backward."""
  prev = getattr(_AUTODIFF, "on", False)
  _AUTODIFF.on = True
  try:
    yield
  finally:
    _AUTODIFF.on = prev


def _patch_forward(w, alpha, b, x, num_real: int, eps: float):
  """`cost`'s patch-mode forward, op for op (so its values are bitwise the autodiff path's),
  plus what the backward reads: ``W x``, ``z``, the residual ``d = x_hat - x`` and
  ``sqrt(z^2 + eps)``."""
  mask = (jnp.arange(x.shape[0]) < num_real).astype(jnp.float32)
  n = jnp.float32(x.shape[1] * num_real)
  wx = jnp.einsum("lbd,lkd->lbk", x, w.astype(x.dtype))
  z = alpha.astype(x.dtype)[:, None, None] * wx
  d = jnp.einsum("lbk,lkd->lbd", z, w.astype(x.dtype)) + b.astype(x.dtype)[:, None, :] - x
  sq = jnp.sqrt(jnp.square(z.astype(jnp.float32)) + eps)
  sparse = jnp.sum(jnp.sum(sq, axis=(1, 2)) * mask) / n
  rec = jnp.sum(jnp.sum(jnp.square(d.astype(jnp.float32)), axis=(1, 2)) * mask) / n
  return (rec, sparse), (wx, z, d, sq, mask / n)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _patch_cost(w, alpha, b, x, num_real: int, eps: float):
  """``(reconstruction, sparsity)`` of patches ``x`` ``(L_pad, B, D)``, the first ``num_real``
  locations real (patch mode, no pooling)."""
  return _patch_forward(w, alpha, b, x, num_real, eps)[0]


def _patch_cost_fwd(w, alpha, b, x, num_real, eps):
  out, (wx, z, d, sq, c) = _patch_forward(w, alpha, b, x, num_real, eps)
  return out, (w, alpha, x, wx, z, d, sq, c)


def _patch_cost_bwd(num_real, eps, res, cts):
  """The cost's gradient with the per-location scales applied to the products' small results.

  With ``c = mask / N`` and the terms' cotangents ``g_r``, ``g_s`` (``loss = r + lam s``)::

      dz = 2 c g_r (d W^T) + c g_s z / sqrt(z^2 + eps)           (L, B, K)
      dW = 2 c g_r (z^T d) + alpha dz^T x,   db = 2 c g_r sum_b d,   dalpha = sum dz * (W x)

  Autodiff first materializes ``2 c g_r d`` (a read and a write of the ``(L, B, D)`` residual)
  and feeds that to both products and the bias reduction; here the products read ``d`` itself
  and the scale multiplies their ``(L, B, K)`` and ``(L, K, D)`` results, inside the fusions
  that already add their other terms. The sums are the same; their rounding is not (the scale
  is applied after the products instead of before), so the gradients match autodiff's to float32
  rounding, not bitwise (tests/test_rica.py)."""
  w, alpha, x, wx, z, d, sq, c = res
  g_rec, g_sp = cts
  dt = x.dtype
  two_cr = (2.0 * g_rec * c).astype(dt)[:, None, None]  # (L, 1, 1)
  cs = (g_sp * c)[:, None, None]
  wt = w.astype(dt)
  dz = two_cr * jnp.einsum("lbd,lkd->lbk", d, wt) + (cs * z / sq).astype(dt)
  dwx = alpha.astype(dt)[:, None, None] * dz
  dw = two_cr * jnp.einsum("lbk,lbd->lkd", z, d) + jnp.einsum("lbk,lbd->lkd", dwx, x)
  db = two_cr[:, 0] * jnp.sum(d, axis=1)
  dalpha = jnp.sum((dz * wx).astype(jnp.float32), axis=(1, 2))
  dx = jnp.einsum("lbk,lkd->lbd", dwx, wt) - two_cr * d  # dropped (DCE) when x is not trained
  return dw.astype(w.dtype), dalpha.astype(alpha.dtype), db.astype(w.dtype), dx


_patch_cost.defvjp(_patch_cost_fwd, _patch_cost_bwd)


def apply(params: dict, image: jax.Array, g: LocalGeometry) -> jax.Array:
  """Encode a spatial-major map ``(H, W, B, C)``: returns features ``(L_pad, B, K)``."""
  return encode(params, extract_patches(image, g))
