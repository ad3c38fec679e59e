"""Optimal stimulus: the input of fixed norm that most excites one neuron (Le et al. 2012, §4.3).

Le et al. visualized their face and cat neurons by solving
``x* = argmax_x f_m(x)  subject to ||x||_2 = r`` with gradient ascent. This does the same for any
differentiable JAX feature function ``f(images (B, H, W, C)) -> (B, M)``:

* one image per requested neuron, optimized together in one batch (``fn`` must treat examples
  independently, so image ``b`` only drives neuron ``neurons[b]``);
* projected, normalized gradient ascent on the sphere ``||x_b|| = norm``: each step moves image
  ``b`` by ``step_size * norm`` along its unit gradient, then rescales it back to ``norm``; the
  step decays to zero on a cosine schedule, so the iterate settles;
* optionally each image is kept zero-mean (``zero_mean=True``), the natural constraint for
  inputs that were mean-subtracted / whitened in preprocessing;
* the best image seen for each neuron (highest activation) is returned, with the activation trace.

For a linear neuron ``f_m(x) = <w_m, x>`` the answer is ``norm * w_m / ||w_m||``; the tests use
that. The default ``norm`` gives unit root-mean-square per value: ``sqrt(H * W * C)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _project(x: jax.Array, norm: float, zero_mean: bool) -> jax.Array:
  if zero_mean:
    x = x - jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  n = jnp.sqrt(jnp.sum(jnp.square(x), axis=(1, 2, 3), keepdims=True))
  return x * (norm / jnp.maximum(n, 1e-12))


def optimal_stimulus(
  fn: Callable[[jax.Array], jax.Array],
  neurons: int | Sequence[int],
  shape: tuple[int, int, int],
  *,
  steps: int = 200,
  step_size: float = 0.1,
  norm: float | None = None,
  zero_mean: bool = False,
  key: jax.Array | None = None,
  init: jax.Array | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Images ``(B, H, W, C)`` maximizing ``fn(x)[b, neurons[b]]`` on ``||x_b|| = norm``.

  ``neurons``: one id or a sequence (B of them); ``shape``: ``(H, W, C)`` of one input; ``init``
  (``(B, H, W, C)``) replaces the default random start (normal noise from ``key``). Returns
  ``(best_images, trace)``; ``trace`` is ``(steps + 1, B)``: each neuron's activation at the
  start and after every step.
  """
  ids = np.atleast_1d(np.asarray(neurons, np.int32))
  if ids.ndim != 1 or ids.size == 0:
    raise ValueError(f"neurons must be an id or a non-empty sequence of ids, got {neurons!r}")
  if len(shape) != 3:
    raise ValueError(f"shape must be one input's (H, W, C), got {shape}")
  if steps < 0:
    raise ValueError(f"steps must be >= 0, got {steps}")
  b = ids.size
  r = float(norm) if norm is not None else math.sqrt(math.prod(shape))
  if init is None:
    key = jax.random.key(0) if key is None else key
    x0 = jax.random.normal(key, (b, *shape), jnp.float32)
  else:
    x0 = jnp.asarray(init, jnp.float32)
    if x0.shape != (b, *shape):
      raise ValueError(f"init must have shape {(b, *shape)}, got {x0.shape}")
  out = jax.eval_shape(fn, x0)
  if len(out.shape) != 2 or out.shape[0] != b:
    raise ValueError(f"fn must map ({b}, H, W, C) images to ({b}, M) features, got {out.shape}")
  if ids.min() < 0 or ids.max() >= out.shape[1]:
    raise ValueError(f"neuron ids must be within 0..{out.shape[1] - 1}, got {ids.tolist()}")
  return _ascend(fn, jnp.asarray(ids), x0, steps, step_size, r, zero_mean)


def _ascend(fn, ids, x0, steps, step_size, norm, zero_mean):
  rows = jnp.arange(ids.shape[0])

  def act(x):
    return fn(x)[rows, ids].astype(jnp.float32)

  @jax.jit
  def run(x0):
    x = _project(x0, norm, zero_mean)
    a0 = act(x)

    def step(carry, t):
      x, best_x, best_a = carry
      g = jax.grad(lambda v: jnp.sum(act(v)))(x)
      if zero_mean:
        g = g - jnp.mean(g, axis=(1, 2, 3), keepdims=True)
      gn = jnp.sqrt(jnp.sum(jnp.square(g), axis=(1, 2, 3), keepdims=True))
      lr = step_size * norm * 0.5 * (1.0 + jnp.cos(jnp.pi * t / max(steps, 1)))
      x = _project(x + lr * g / jnp.maximum(gn, 1e-30), norm, zero_mean)
      a = act(x)
      better = a > best_a
      best_x = jnp.where(better[:, None, None, None], x, best_x)
      return (x, best_x, jnp.maximum(a, best_a)), a

    (_, best_x, _), trace = jax.lax.scan(step, (x, x, a0), jnp.arange(steps, dtype=jnp.float32))
    return best_x, jnp.concatenate([a0[None], trace], axis=0)

  best_x, trace = run(x0)
  return np.asarray(best_x), np.asarray(trace)
