"""A fixed feature space for judging samples offline: a random conv net with frozen weights.

No pretrained Inception network is available offline, so FID's feature space is replaced by a
fixed, seeded random two-layer conv net (3x3/2 -> relu -> 3x3/2 -> relu -> 2x2 average pool;
weights drawn once from ``numpy.random.default_rng(0)``, He-scaled, never trained). Random conv
features respond to local image statistics — stroke width, edges, blob positions and contrast
— so the Frechet distance between two sets in this space is zero for identical distributions
and grows with differences in those statistics; it is not a semantic (class-level) measure.
Every number is reported beside two references computed the same way: training images vs the
held-out images (the floor a perfect generator reaches) and uniform noise vs held-out (what no
learning gives).

* `features(images)` — ``(N, 256)`` features of images in [-1, 1] at the run's full size;
* `frechet(a, b)` — the Frechet distance between Gaussians fitted to two feature sets
  (Heusel et al. 2017): ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, in float64;
* `diversity(fa, fb)` — mean pairwise feature distance within ``fa`` over that within ``fb``
  (~1 when samples vary like the data; -> 0 under mode collapse).
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

WIDTHS = (32, 64)


@functools.lru_cache(maxsize=8)
def _weights(channels: int) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(0)
  c1, c2 = WIDTHS
  w1 = rng.normal(0, np.sqrt(2.0 / (9 * channels)), (3, 3, channels, c1)).astype(np.float32)
  w2 = rng.normal(0, np.sqrt(2.0 / (9 * c1)), (3, 3, c1, c2)).astype(np.float32)
  return w1, w2


def features(images: jax.Array) -> jax.Array:
  """``(N, H, W, C)`` in [-1, 1] -> ``(N, 4 * 64)``; traceable (used inside the train step)."""
  w1, w2 = _weights(int(images.shape[-1]))
  conv = lambda x, w: jax.lax.conv_general_dilated(
    x, jnp.asarray(w), (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  h = jax.nn.relu(conv(images.astype(jnp.float32), w1))
  h = jax.nn.relu(conv(h, w2))
  b, hh, ww, c = h.shape
  h = h.reshape(b, 2, hh // 2, 2, ww // 2, c).mean(axis=(2, 4))
  return h.reshape(b, -1)


def mean_pairwise_distance(f: jax.Array) -> jax.Array:
  sq = jnp.sum(f * f, axis=1)
  d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * f @ f.T, 0.0)
  n = f.shape[0]
  return jnp.sum(jnp.sqrt(d2 + 1e-12) * (1.0 - jnp.eye(n))) / (n * (n - 1))


def diversity(fake_features: jax.Array, real_features: jax.Array) -> jax.Array:
  return mean_pairwise_distance(fake_features) / (mean_pairwise_distance(real_features) + 1e-12)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  mu_a, mu_b = a.mean(0), b.mean(0)
  sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  with warnings.catch_warnings():  # fewer samples than dimensions: singular, still defined
    warnings.simplefilter("ignore")
    root = scipy.linalg.sqrtm(sa @ sb)
  root = np.real(root)
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(sa) + np.trace(sb) - 2.0 * np.trace(root))
