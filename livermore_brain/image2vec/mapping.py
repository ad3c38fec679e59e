"""Image2Vec: mapping layers from frozen image features to the word space (the report's Fig. 5).

An MLP (``depth`` hidden ReLU layers of ``hidden`` units, then a linear layer to the word
dimension) maps standardized image features ``x`` to ``f(x)``. Each training image's targets are
the unit word vectors ``t`` of its tags; two losses, selectable:

* ``cosine`` — ``1 - mean_t cos(f(x), t)`` (the report: each tag's vector is the target);
* ``hinge`` — DeViSE's ranking loss (Frome et al. 2013): for every tag ``t`` of the image and every
  other tag ``j`` of the training vocabulary, ``max(0, margin - f(x).t + f(x).j)``, summed over
  ``j``, averaged over ``t``.

Tagging scores every vocabulary tag — seen in training or not — by ``cos(f(x), t)``; search by
word ranks images by the same cosine to the query word's vector, search by image ranks tags
(and images, by ``cos(f(x), f(y))``). Minibatches are split over the mesh's ``data`` axis; the
small MLP is replicated.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from livermore_brain import sharding as shd

LOSSES = ("cosine", "hinge")


class MLP(nn.Module):
  hidden: tuple[int, ...]
  out: int

  @nn.compact
  def __call__(self, x):
    for h in self.hidden:
      x = nn.relu(nn.Dense(h)(x))
    return nn.Dense(self.out)(x)


def unit(x, axis=-1):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def loss_fn(f: jax.Array, y: jax.Array, t: jax.Array, kind: str, margin: float) -> jax.Array:
  """Mean loss of outputs ``f (B, D)`` for tags ``y (B, T)`` (0/1) with unit tag vectors
  ``t (T, D)``."""
  npos = jnp.maximum(y.sum(1), 1.0)
  if kind == "cosine":
    cos = unit(f) @ t.T
    return jnp.mean(1.0 - (y * cos).sum(1) / npos)
  if kind == "hinge":
    s = f @ t.T  # (B, T)
    viol = jax.nn.relu(margin - s[:, :, None] + s[:, None, :])  # [b, pos t, neg j]
    mask = y[:, :, None] * (1.0 - y[:, None, :])
    return jnp.mean((viol * mask).sum((1, 2)) / npos)
  raise ValueError(f"loss {kind!r}: use one of {LOSSES}")


@dataclasses.dataclass
class Image2Vec:
  """A fitted mapping: feature standardization, the MLP and its parameters."""

  mean: np.ndarray
  std: np.ndarray
  model: MLP
  params: dict
  history: list

  @classmethod
  def fit(cls, feats, tags, tag_vectors, *, depth=2, hidden=512, loss="cosine", margin=0.1,
          steps=1500, batch_size=256, learning_rate=1e-3, weight_decay=1e-4, seed=0, mesh=None):  # fmt: skip
    """Train on ``feats (N, F)`` with tags ``(N, T)`` whose word vectors are ``(T, D)``; rows
    with no tag are ignored."""
    feats, tags = np.asarray(feats, np.float32), np.asarray(tags, bool)
    keep = tags.any(1)
    feats, tags = feats[keep], tags[keep]
    if loss not in LOSSES:
      raise ValueError(f"loss {loss!r}: use one of {LOSSES}")
    mean, std = feats.mean(0), feats.std(0) + 1e-6
    x = (feats - mean) / std
    t = np.asarray(tag_vectors, np.float32)
    t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    model = MLP(tuple([int(hidden)] * int(depth)), t.shape[1])
    params = model.init(jax.random.key(seed), jnp.zeros((1, x.shape[1])))
    tx = optax.adamw(
      optax.cosine_decay_schedule(learning_rate, max(steps, 1)), weight_decay=weight_decay
    )
    mesh = mesh if mesh is not None else shd.make_mesh("data:1,model:-1", jax.devices()[:1])
    bsh, rep = shd.batch_sharding(mesh, ndim=2), shd.replicated(mesh)
    t_dev = jax.device_put(jnp.asarray(t), rep)

    @jax.jit
    def step(p, s, xb, yb):
      def objective(p):
        return loss_fn(model.apply(p, xb), yb, t_dev, loss, margin)

      val, g = jax.value_and_grad(objective)(p)
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s, val

    params = jax.device_put(params, rep)
    state = tx.init(params)
    rng = np.random.default_rng(seed)
    bs = min(int(batch_size), len(x))
    bs -= bs % mesh.shape["data"] or 0
    history = []
    for i in range(int(steps)):
      b = rng.choice(len(x), bs, replace=False)
      xb = jax.device_put(x[b], bsh)
      yb = jax.device_put(tags[b].astype(np.float32), bsh)
      params, state, val = step(params, state, xb, yb)
      if i % 100 == 0 or i == steps - 1:
        history.append((i, float(val)))
    return cls(mean, std, model, jax.device_get(params), history)

  def embed(self, feats) -> np.ndarray:
    """Image features -> unit vectors in the word space, ``(N, D)``."""
    x = (np.asarray(feats, np.float32) - self.mean) / self.std
    f = np.asarray(self.model.apply(self.params, jnp.asarray(x)))
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)

  def scores(self, feats, tag_vectors) -> np.ndarray:
    """``cos(f(x), t)`` for every image and tag vector: ``(N, T)``."""
    t = np.asarray(tag_vectors, np.float32)
    t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    return self.embed(feats) @ t.T


def search_by_word(embedded: np.ndarray, word_vector: np.ndarray, k: int = 6) -> np.ndarray:
  """Indices of the ``k`` images whose mapped vectors are closest (cosine) to a word vector."""
  w = np.asarray(word_vector, np.float32)
  return np.argsort(-(embedded @ (w / max(np.linalg.norm(w), 1e-12))), kind="stable")[:k]


def search_by_image(embedded: np.ndarray, query: int, k: int = 6) -> np.ndarray:
  """Indices of the ``k`` other images closest to image ``query`` in the shared space."""
  sims = embedded @ embedded[query]
  sims[query] = -np.inf
  return np.argsort(-sims, kind="stable")[:k]
