"""Local contrast normalization (Jarrett et al. 2009; Le et al. 2012), a pure function.

For a spatial-major map ``x`` ``(H, W, B, K)`` and a Gaussian window ``w`` over ``size x size``
positions and all K features (normalized so that ``sum w = 1``)::

    m     = sum_{p,q,j} w_pq x[i+p, k+q, j] / K              (local mean)
    v     = x - m                                            (subtractive)
    sigma = sqrt(sum_{p,q,j} w_pq (x[i+p, k+q, j] - m)^2 / K) (local spread around m)
    y     = v / max(mean(sigma), sigma, eps)                 (divisive)

(sigma is the weighted spread of the window around the *centre's* local mean, computed as
``E_w[x^2] - m^2``; Jarrett et al. centre each neighbour on its own mean, which needs one more
smoothing pass and behaves the same on natural images.)

``mean(sigma)`` is taken per image (Jarrett's ``c``), so flat regions are not blown up and a
constant image maps to zeros, never NaN.

``padding='same'`` keeps the grid size and renormalizes the window where it hangs over the border;
``padding='valid'`` only normalizes positions whose whole window is inside and shrinks the grid by
``size - 1`` (the paper-faithful preset uses this to reproduce its 62x62 second-layer grid).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PADDINGS = ("same", "valid")


def gaussian_window(size: int, sigma: float) -> jax.Array:
  """Separable 1-D Gaussian taps of ``size`` (sum 1)."""
  r = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2.0
  k = jnp.exp(-0.5 * jnp.square(r / sigma))
  return k / jnp.sum(k)


def output_size(n: int, size: int, padding: str) -> int:
  return n if padding == "same" else n - size + 1


def _smooth(x: jax.Array, taps: jax.Array, padding: str) -> jax.Array:
  """Weighted window sum over the two leading (spatial) axes, features averaged: -> (H', W', B, 1)."""
  x = jnp.mean(x, axis=-1, keepdims=True)
  size = taps.shape[0]
  pad = "SAME" if padding == "same" else "VALID"
  h, w, b, _ = x.shape
  y = jnp.transpose(x, (2, 3, 0, 1)).reshape(b, 1, h, w)  # NCHW, tiny (one channel)
  kern = (taps[:, None] * taps[None, :]).astype(x.dtype)[None, None]
  out = jax.lax.conv_general_dilated(
    y, kern, (1, 1), [((size - 1) // 2, size // 2)] * 2 if pad == "SAME" else "VALID"
  )
  return jnp.transpose(out, (2, 3, 0, 1))


def lcn(
  x: jax.Array, size: int = 5, sigma: float | None = None, padding: str = "same", eps: float = 1e-2
) -> jax.Array:
  """Local contrast normalization of a spatial-major map ``(H, W, B, K)``."""
  if padding not in PADDINGS:
    raise ValueError(f"LCN padding must be one of {PADDINGS}, got {padding!r}")
  h, w = x.shape[:2]
  if size < 1 or (padding == "valid" and (size > h or size > w)):
    raise ValueError(f"LCN window {size} does not fit a {h}x{w} map with padding={padding!r}")
  sigma = sigma if sigma is not None else max(size / 4.0, 0.5)
  taps = gaussian_window(size, sigma)
  dtype = x.dtype
  x = x.astype(jnp.float32)
  # LCN is invariant to a per-image offset; removing it first keeps E[x^2] - mean^2 accurate in f32.
  x = x - jnp.mean(x, axis=(0, 1, 3), keepdims=True)
  norm = _smooth(jnp.ones((h, w, 1, 1), jnp.float32), taps, padding)  # window weight inside map
  mean = _smooth(x, taps, padding) / norm
  lo = (size - 1) // 2 if padding == "valid" else 0
  hh, ww = mean.shape[:2]
  v = x[lo : lo + hh, lo : lo + ww] - mean
  # Weighted variance of the window around its own mean: E_w[x^2] - mean^2.
  var = _smooth(jnp.square(x), taps, padding) / norm - jnp.square(mean)
  sd = jnp.sqrt(jnp.maximum(var, 0.0))
  c = jnp.mean(sd, axis=(0, 1, 3), keepdims=True)  # Jarrett's c, per image
  y = v / jnp.maximum(jnp.maximum(sd, c), eps)
  return y.astype(dtype)
