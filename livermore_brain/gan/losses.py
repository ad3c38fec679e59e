"""The adversarial games' losses, on discriminator outputs (logits) ``real`` and ``fake`` (B,).

* ``nonsaturating`` (Goodfellow et al. 2014, the default): D minimizes the cross-entropy of
  real -> 1 and fake -> 0, ``softplus(-r) + softplus(f)``; G minimizes ``softplus(-f)`` =
  ``-log sigmoid(f)`` (not ``log(1 - sigmoid(f))``, whose gradient vanishes when D wins).
* ``hinge`` (Lim & Ye 2017; Miyato et al. 2018): D ``relu(1 - r) + relu(1 + f)``; G ``-f``.
* ``lsgan`` (Mao et al. 2017, a=0, b=c=1): D ``((r - 1)^2 + f^2) / 2``; G ``(f - 1)^2 / 2``.

One-sided label smoothing ``s`` (Salimans et al. 2016) moves D's real target to ``1 - s``: the
cross-entropy becomes ``(1 - s) softplus(-r) + s softplus(r)``, least squares ``(r - (1 - s))^2``;
the hinge loss has no target and ignores it. Every loss is the batch mean.

D's accuracy: a real image counts as correct when D's output is above the decision threshold
(0 for logits, 0.5 for least squares, whose targets are 0 and 1), a fake one when below.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

KINDS = ("nonsaturating", "hinge", "lsgan")


def check(kind: str) -> str:
  if kind not in KINDS:
    raise ValueError(f"unknown GAN loss {kind!r}; choose one of {', '.join(KINDS)}")
  return kind


def d_loss(kind: str, real: jax.Array, fake: jax.Array, smooth=0.0) -> jax.Array:
  if kind == "nonsaturating":
    lr = (1.0 - smooth) * jax.nn.softplus(-real) + smooth * jax.nn.softplus(real)
    return jnp.mean(lr) + jnp.mean(jax.nn.softplus(fake))
  if kind == "hinge":
    return jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))
  if kind == "lsgan":
    return 0.5 * jnp.mean((real - (1.0 - smooth)) ** 2) + 0.5 * jnp.mean(fake**2)
  raise ValueError(check(kind))


def g_loss(kind: str, fake: jax.Array) -> jax.Array:
  if kind == "nonsaturating":
    return jnp.mean(jax.nn.softplus(-fake))
  if kind == "hinge":
    return -jnp.mean(fake)
  if kind == "lsgan":
    return 0.5 * jnp.mean((fake - 1.0) ** 2)
  raise ValueError(check(kind))


def threshold(kind: str) -> float:
  return 0.5 if kind == "lsgan" else 0.0


def accuracy(kind: str, real: jax.Array, fake: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(on real, on fake)``: the fractions D classifies correctly."""
  t = threshold(kind)
  return jnp.mean((real > t).astype(jnp.float32)), jnp.mean((fake < t).astype(jnp.float32))
