"""Spatio-temporal DCGAN-style generator and discriminator for clips that grow along a chain of
blocks, each doubling either the clip length or the resolution (the video GAN of `gan.video`).

A clip is ``(B, T, H, W, C)``. The model's ``blocks`` string names the generator's up-blocks in
order, ``t`` doubling the frames and ``s`` the height and width; the discriminator mirrors it.
Level ``l`` is the clip size after the first ``l`` blocks: e.g. full clips of 8 frames at 32x32
and ``blocks="sttss"`` give levels 2x4x4, 2x8x8, 4x8x8, 8x8x8, 8x16x16, 8x32x32 (frames x
pixels) — a curriculum that grows the number of frames first, then the resolution, walks that
chain. ``widths[l]`` is the channel count at level ``l``. As in `gan.nets`, the level is static
and the fade-in weight ``alpha`` traced::

    G(z, l, alpha):  h0 = relu(BN(dense(z)))                             (the level-0 clip)
                     h_k = relu(BN(convT3d/2(h_{k-1})))   k = 1..l   (stride 2 in t or in h, w)
                     x = alpha * rgb_l(h_l) + (1 - alpha) * up_l(rgb_{l-1}(h_{l-1}))
    D(x, l, alpha):  h = lrelu(from_rgb_l(x))
                     h = alpha * block_l(h) + (1 - alpha) * lrelu(from_rgb_{l-1}(down_l(x)))
                     h = block_k(h), k = l-1 .. 1;  logit = dense(flatten(h))

``up_l`` repeats frames (a ``t`` block) or pixels (``s``), ``down_l`` averages frame pairs or
2x2 pixels; ``rgb`` is a 1x1x1 conv + tanh. Convolutions are (2+1)-D: a ``t`` block's kernel
is 4x3x3 (time x space), stride (2, 1, 1), mixing frames and neighbouring pixels; an ``s``
block's 1x4x4, stride (1, 2, 2), per frame (3x cheaper than a 3x4x4 kernel on CPUs, where the
``cpu`` preset has to fit). So at ``alpha = 0`` a level-``l`` network computes exactly its level
``l - 1`` function on the shorter (or smaller) clip, repeated (or pooled); at ``alpha = 1`` the
new block alone (tested). Every level's heads exist from init: the state never changes shape.

The discriminator sows its maps as features named by clip size, ``conv8x32`` (8 frames at
32x32, the input layer) ... ``conv2x4``, then ``logits`` (`VideoDiscriminator.feature_layers`).
Kernels carry logical axis names (``conv_t`` is replicated by the default rules).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from livermore_brain.gan.nets import init, lrelu
from livermore_brain.layers.conv_blocks import (
  CHANNEL_AXES,
  CLASSIFIER_AXES,
  CLASSIFIER_BIAS_AXES,
  batch_norm,
  dense,
)

CONV3D_AXES = ("conv_t", "conv_h", "conv_w", "conv_in", "conv_out")
KINDS = "st"


def check_blocks(blocks: str) -> str:
  blocks = str(blocks)
  if not blocks or set(blocks) - set(KINDS):
    raise ValueError(f"model.blocks={blocks!r}: a string of 't' (frames x2) and 's' (pixels x2)")
  return blocks


def geometry(blocks: str, frames: int, res: int) -> list[tuple[int, int]]:
  """``(frames, pixels)`` of every level of the chain, level 0 first, for full clips of
  ``frames`` frames at ``res x res``; ValueError when the chain does not divide them."""
  blocks = check_blocks(blocks)
  nt, ns = blocks.count("t"), blocks.count("s")
  if frames % 2**nt or res % 2**ns:
    raise ValueError(
      f"model.blocks={blocks!r} halves the clip {nt} times in time and {ns} in space: "
      f"{frames} frames and {res} pixels must be divisible by {2**nt} and {2**ns}"
    )
  f, r = frames // 2**nt, res // 2**ns
  out = [(f, r)]
  for b in blocks:
    f, r = (2 * f, r) if b == "t" else (f, 2 * r)
    out.append((f, r))
  return out


def up(x: jax.Array, kind: str) -> jax.Array:
  """Nearest-neighbour doubling of the frames (``t``) or the pixels (``s``) of (B, T, H, W, C)."""
  if kind == "t":
    return jnp.repeat(x, 2, axis=1)
  return jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)


def down(x: jax.Array, ft: int, fs: int) -> jax.Array:
  """Average pooling of (B, T, H, W, C) by ``ft`` frames and ``fs x fs`` pixels."""
  if ft == 1 and fs == 1:
    return x
  b, t, h, w, c = x.shape
  return x.reshape(b, t // ft, ft, h // fs, fs, w // fs, fs, c).mean(axis=(2, 4, 6))


def down_kind(x: jax.Array, kind: str) -> jax.Array:
  return down(x, 2, 1) if kind == "t" else down(x, 1, 2)


def _conv(features, kind, name, transpose=False, bias=False):
  """A 3-D (transposed) conv: ``kind`` ``t`` strides 2 in time, ``s`` in space, ``1`` is 1x1x1."""
  kernel, strides = {"t": ((4, 3, 3), (2, 1, 1)), "s": ((1, 4, 4), (1, 2, 2))}.get(
    kind, ((1, 1, 1), (1, 1, 1))
  )
  cls = nn.ConvTranspose if transpose else nn.Conv
  extra = {}
  if bias:
    extra["bias_init"] = nn.with_logical_partitioning(nn.initializers.zeros, CHANNEL_AXES)
  return cls(
    features,
    kernel,
    strides,
    padding="SAME",
    use_bias=bias,
    kernel_init=nn.with_logical_partitioning(init, CONV3D_AXES),
    name=name,
    **extra,
  )


class VideoGenerator(nn.Module):
  widths: Sequence[int]
  blocks: str
  base: tuple[int, int]  # (frames, pixels) of level 0
  channels: int = 1
  dtype: Any = jnp.float32

  @property
  def max_level(self) -> int:
    return len(self.blocks)

  @nn.compact
  def __call__(self, z: jax.Array, level: int, alpha, train: bool) -> jax.Array:
    w = tuple(int(v) for v in self.widths)
    f0, r0 = self.base
    h = dense(f0 * r0 * r0 * w[0], init=init, name="project")(z.astype(self.dtype))
    h = h.reshape(z.shape[0], f0, r0, r0, w[0])
    h = nn.relu(batch_norm(train, self.dtype, name="project_bn")(h))
    hs = [h]
    top = self.max_level if self.is_initializing() else level
    for k in range(1, top + 1):
      h = _conv(w[k], self.blocks[k - 1], f"up{k}", transpose=True)(h)
      h = nn.relu(batch_norm(train, self.dtype, name=f"up{k}_bn")(h))
      hs.append(h)
    rgb = lambda k: jnp.tanh(_conv(self.channels, "1", f"to_rgb{k}", bias=True)(hs[k]))
    if self.is_initializing():  # create every level's head
      outs = [rgb(k) for k in range(self.max_level + 1)]
      return outs[level]
    hi = rgb(level)
    if level == 0:
      return hi
    return alpha * hi + (1.0 - alpha) * up(rgb(level - 1), self.blocks[level - 1])


class VideoDiscriminator(nn.Module):
  widths: Sequence[int]
  blocks: str
  base: tuple[int, int]
  dtype: Any = jnp.float32

  @property
  def max_level(self) -> int:
    return len(self.blocks)

  def layer_name(self, level: int) -> str:
    f, r = geometry(self.blocks, *self._full())[level]
    return f"conv{f}x{r}"

  def _full(self) -> tuple[int, int]:
    nt, ns = self.blocks.count("t"), self.blocks.count("s")
    return self.base[0] * 2**nt, self.base[1] * 2**ns

  def feature_layers(self) -> tuple[str, ...]:
    return tuple(self.layer_name(k) for k in range(self.max_level, -1, -1)) + ("logits",)

  @nn.compact
  def __call__(self, x: jax.Array, level: int, alpha, train: bool) -> jax.Array:
    w = tuple(int(v) for v in self.widths)
    x = x.astype(self.dtype)
    from_rgb = lambda k, clip: lrelu(_conv(w[k], "1", f"from_rgb{k}", bias=True)(clip))
    if self.is_initializing():  # every level's input head (level - 1's comes with the fade-in)
      geo = geometry(self.blocks, *self._full())
      for k in range(level - 1):
        ft, fs = geo[level][0] // geo[k][0], geo[level][1] // geo[k][1]
        from_rgb(k, down(x, ft, fs))
    h = from_rgb(level, x)
    self.sow("intermediates", self.layer_name(level), h)
    for k in range(level, 0, -1):
      kind = self.blocks[k - 1]
      h = _conv(w[k - 1], kind, f"block{k}")(h)
      h = lrelu(batch_norm(train, self.dtype, name=f"block{k}_bn")(h))
      if k == level:
        h = alpha * h + (1.0 - alpha) * from_rgb(k - 1, down_kind(x, kind))
      self.sow("intermediates", self.layer_name(k - 1), h)
    logit = dense(1, CLASSIFIER_AXES, CLASSIFIER_BIAS_AXES, init=init, name="logit")(
      h.reshape(h.shape[0], -1)
    )
    self.sow("intermediates", "logits", logit)
    return logit[:, 0]
