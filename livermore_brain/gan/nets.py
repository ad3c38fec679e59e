"""DCGAN-style generator and discriminator (Radford et al. 2016) that grow progressively (Karras
et al. 2018): strided (transposed) convolutions, batch norm, configurable widths.

Resolution ``4 * 2**k`` is *level* ``k``; ``widths[k]`` is the channel count of both networks'
feature maps at that level (e.g. ``(128, 64, 32, 16)`` for 4, 8, 16, 32 pixels). The level the
networks play at is a static argument (one compiled step per level); the fade-in weight
``alpha`` is a traced scalar::

    G(z, level, alpha):  h0 = relu(BN(dense(z)))  (4x4)
                         h_k = relu(BN(convT_4x4/2(h_{k-1})))          k = 1..level
                         x = alpha * rgb_level(h_level) + (1 - alpha) * up2(rgb_{level-1}(h_{level-1}))
    D(x, level, alpha):  h = lrelu(from_rgb_level(x))                   (no BN on D's input layer)
                         h = alpha * block_level(h) + (1 - alpha) * lrelu(from_rgb_{level-1}(down2(x)))
                         h = block_k(h), k = level-1 .. 1;  logit = dense(flatten(h at 4x4))

with ``block_k = lrelu(BN(conv_4x4/2))`` (level k -> k-1), ``rgb`` a 1x1 conv + tanh (images
in [-1, 1]), ``up2`` nearest-neighbour, ``down2`` 2x2 average. At ``alpha = 0`` a level-k
network computes exactly its level-(k-1) function (up/down-sampled); at ``alpha = 1`` the new
layers alone (tested). Parameters of every level exist from the start (init touches every head),
so the train state never changes shape and a checkpoint restores at any stage.

The discriminator sows its maps as features, named by resolution: ``conv32`` (the input layer at
32x32), ``conv16``, ``conv8``, ``conv4``, then ``logits`` (`Discriminator.feature_layers`).
Parameters carry logical axis names (`layers.conv_blocks`), so the rules table shards them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from livermore_brain.layers.conv_blocks import (
  CHANNEL_AXES,
  CLASSIFIER_AXES,
  CLASSIFIER_BIAS_AXES,
  CONV_AXES,
  batch_norm,
  dense,
)

init = nn.initializers.normal(0.02)  # DCGAN's initialization


def lrelu(x):
  return nn.leaky_relu(x, 0.2)


def up2(x: jax.Array) -> jax.Array:
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def down(x: jax.Array, f: int) -> jax.Array:
  """``f x f`` average pooling (f divides H and W)."""
  if f == 1:
    return x
  b, h, w, c = x.shape
  return x.reshape(b, h // f, f, w // f, f, c).mean(axis=(2, 4))


def _conv(features, kernel, strides, name, bias=False, transpose=False):
  cls = nn.ConvTranspose if transpose else nn.Conv
  return cls(
    features,
    (kernel, kernel),
    (strides, strides),
    padding="SAME",
    use_bias=bias,
    kernel_init=nn.with_logical_partitioning(init, CONV_AXES),
    **(
      {"bias_init": nn.with_logical_partitioning(nn.initializers.zeros, CHANNEL_AXES)}
      if bias
      else {}
    ),
    name=name,
  )


def res_of(level: int) -> int:
  return 4 * 2**level


class Generator(nn.Module):
  widths: Sequence[int]
  channels: int = 1
  dtype: Any = jnp.float32

  @property
  def max_level(self) -> int:
    return len(self.widths) - 1

  @nn.compact
  def __call__(self, z: jax.Array, level: int, alpha, train: bool) -> jax.Array:
    w = tuple(int(v) for v in self.widths)
    h = dense(16 * w[0], init=init, name="project")(z.astype(self.dtype))
    h = h.reshape(z.shape[0], 4, 4, w[0])
    h = nn.relu(batch_norm(train, self.dtype, name="project_bn")(h))
    hs = [h]
    top = self.max_level if self.is_initializing() else level
    for k in range(1, top + 1):
      h = _conv(w[k], 4, 2, f"up{k}", transpose=True)(h)
      h = nn.relu(batch_norm(train, self.dtype, name=f"up{k}_bn")(h))
      hs.append(h)
    rgb = lambda k: jnp.tanh(_conv(self.channels, 1, 1, f"to_rgb{k}", bias=True)(hs[k]))
    if self.is_initializing():  # create every level's head
      outs = [rgb(k) for k in range(self.max_level + 1)]
      return outs[level]
    hi = rgb(level)
    if level == 0:
      return hi
    lo = up2(rgb(level - 1))
    return alpha * hi + (1.0 - alpha) * lo


class Discriminator(nn.Module):
  widths: Sequence[int]
  dtype: Any = jnp.float32

  @property
  def max_level(self) -> int:
    return len(self.widths) - 1

  def feature_layers(self) -> tuple[str, ...]:
    return tuple(f"conv{res_of(k)}" for k in range(self.max_level, -1, -1)) + ("logits",)

  @nn.compact
  def __call__(self, x: jax.Array, level: int, alpha, train: bool) -> jax.Array:
    w = tuple(int(v) for v in self.widths)
    x = x.astype(self.dtype)
    from_rgb = lambda k, img: lrelu(_conv(w[k], 1, 1, f"from_rgb{k}", bias=True)(img))
    if self.is_initializing():  # create every level's input head
      for k in range(level - 1):  # (level - 1's head is made by the fade-in below)
        from_rgb(k, down(x, 2 ** (level - k)))
    h = from_rgb(level, x)
    self.sow("intermediates", f"conv{res_of(level)}", h)
    for k in range(level, 0, -1):
      h = _conv(w[k - 1], 4, 2, f"block{k}")(h)
      h = lrelu(batch_norm(train, self.dtype, name=f"block{k}_bn")(h))
      if k == level:
        h = alpha * h + (1.0 - alpha) * from_rgb(k - 1, down(x, 2))
      self.sow("intermediates", f"conv{res_of(k - 1)}", h)
    logit = dense(1, CLASSIFIER_AXES, CLASSIFIER_BIAS_AXES, init=init, name="logit")(
      h.reshape(h.shape[0], -1)
    )
    self.sow("intermediates", "logits", logit)
    return logit[:, 0]
