"""Shared-weight towers, late fusion: the context-prediction network.

    net = ContextNet(tower=convnets.build("resception", preset, embed), num_classes=80,
                     hidden=256)
    logits = net.apply(variables, patches, train=False)   # patches (B, K, P, P, C) in [0, 1]

Every patch goes through the same tower (one set of weights: the K patches of a batch are one
``(B * K, P, P, C)`` batch, so batch norm's statistics cover every patch of the global batch);
each tower ends in its own global average pooling (the convnets' ``pool``) and a fully connected
``embed``-wide layer (the convnets' classifier, sown as ``logits``); the K embeddings are
concatenated in slot order and fused by a hidden fully connected layer and the classifier over
arrangements (Doersch et al. 2015's late fusion; the triple release's per-tower pooling).
The patches of one sample are standardized together (`standardize` over all K patches: one
mean and one standard deviation per sample), inside the network: the exposure of the photo is
removed but not the brightness of one patch relative to another (sky above ground is a cue the
task is meant to learn); the features of a trained tower (`context.features`) standardize each
image the same way.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from livermore_brain.layers.conv_blocks import (
  CLASSIFIER_AXES,
  CLASSIFIER_BIAS_AXES,
  classifier_init,
  dense,
)

EPS = 0.01


def standardize(x: jax.Array, eps: float = EPS) -> jax.Array:
  """``(x - mean) / (std + eps)`` per example, over every axis after the first (a sample's
  patches ``(B, K, P, P, C)`` together, or one image ``(B, H, W, C)``)."""
  x = x.astype(jnp.float32)
  axes = tuple(range(1, x.ndim))
  x = x - jnp.mean(x, axis=axes, keepdims=True)
  return x / (jnp.std(x, axis=axes, keepdims=True) + eps)


class ContextNet(nn.Module):
  tower: nn.Module
  num_classes: int
  hidden: int = 256

  @nn.compact
  def __call__(self, patches: jax.Array, train: bool) -> jax.Array:
    if patches.ndim != 5:
      raise ValueError(f"expected patches (B, K, P, P, C), got shape {tuple(patches.shape)}")
    b, k = patches.shape[:2]
    x = standardize(patches).reshape(b * k, *patches.shape[2:])
    f = nn.relu(self.tower(x, train))  # (B * K, embed)
    f = f.reshape(b, k * f.shape[-1])
    h = nn.relu(dense(self.hidden, name="fuse")(f))
    return dense(
      self.num_classes, CLASSIFIER_AXES, CLASSIFIER_BIAS_AXES, classifier_init, name="classifier"
    )(h).astype(jnp.float32)
