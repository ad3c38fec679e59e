"""Shared-weight towers, late fusion: the context-prediction network.

    net = ContextNet(tower=convnets.build("resception", preset, embed), num_classes=80,
                     hidden=256)
    logits = net.apply(variables, patches, train=False)   # patches (B, K, P, P, C) in [0, 1]

Every patch goes through the same tower (one set of weights: the K patches of a batch are one
``(B * K, P, P, C)`` batch, so batch norm's statistics cover every patch of the global batch);
each tower ends in its own global average pooling (the convnets' ``pool``) and a linear fully
connected ``embed``-wide layer (the convnets' classifier, sown as ``logits``); the K embeddings
are concatenated in slot order and fused by a hidden fully connected layer (batch norm, ReLU) and
the classifier over arrangements (Doersch et al. 2015's late fusion; the triple release's per-tower pooling).
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
  batch_norm,
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
    # The embedding stays linear: with a ReLU here every unit of it died within 200 steps of the
    # triple task (the towers' outputs all negative, the head's input all zero, the output a
    # constant: loss ln 80 for good); the fusing layer below is the nonlinearity.
    f = self.tower(x, train)  # (B * K, embed)
    f = f.reshape(b, k * f.shape[-1])
    # Batch norm before this ReLU: without it every fusing unit died early in the triple task
    # (pre-activations negative for all inputs, a constant output, loss ln 80 for good);
    # normalized over the batch, about half of every unit's inputs stay on the live side.
    h = dense(self.hidden, name="fuse", use_bias=False)(f)
    h = nn.relu(batch_norm(train, name="fuse_bn")(h))
    return dense(
      self.num_classes, CLASSIFIER_AXES, CLASSIFIER_BIAS_AXES, classifier_init, name="classifier"
    )(h).astype(jnp.float32)
