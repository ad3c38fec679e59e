"""The predictive autoencoder's networks: a (2+1)-D convolutional encoder over the first K frames
of a clip and a decoder that predicts the next P frames (the report's "predictive autoencoder").

    encoder(x (B, K, H, W, C)):  block_i = relu(conv_t(relu(conv_s(h))))      i = 1..len(widths)
        conv_s: 3x3 / 2 on every frame (space only);  conv_t: 3 taps on every pixel (time only)
        -> sows ``block1`` .. ``blockN`` (B, K, H / 2^i, W / 2^i, widths[i]) and ``pool``
           (B, widths[-1]), the mean over time and space of the last block
    decoder(h):  time folded into channels (B, h, w, K F) -> 2 x relu(conv 3x3, decoder_width)
        -> conv 3x3 to P C s^2 channels -> depth to space (s = 2^len(widths)) -> (B, P, H, W, C)

(2+1)-D factorization (Tran et al. 2018): a spatial then a temporal convolution per block, so
motion is seen by the temporal kernels at every scale. The decoder works at the encoder's
resolution and emits each s x s output patch as channels (pixel shuffle, Shi et al. 2016): on
XLA:CPU transposed convolutions at full resolution cost ~6x more per step for the same task. Parameters carry logical axis names
(``conv_t`` for the temporal kernel's axis, `layers.conv_blocks` for the rest), so the rules table
shards them; the default keeps them replicated (data parallel).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from livermore_brain.layers.conv_blocks import CHANNEL_AXES, CONV_AXES

TIME_AXES = ("conv_t", "conv_w", "conv_in", "conv_out")  # a (kt, 1, in, out) temporal kernel


def _time_conv(features, kernel, name):
  return nn.Conv(
    features,
    (kernel, 1),
    padding="SAME",
    kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), TIME_AXES),
    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, CHANNEL_AXES),
    name=name,
  )


def _conv2(features, kernel, strides, name):
  return nn.Conv(
    features,
    (kernel, kernel),
    (strides, strides),
    padding="SAME",
    kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), CONV_AXES),
    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, CHANNEL_AXES),
    name=name,
  )


class Encoder(nn.Module):
  widths: Sequence[int]

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, t = x.shape[:2]
    for i, w in enumerate(self.widths, 1):
      # space: a 3x3 / 2 conv of every frame; time: a 3-tap conv of every pixel's sequence
      # (as 2-D convolutions: XLA:CPU runs them several times faster than 3-D ones)
      y = _conv2(w, 3, 2, f"block{i}_space")(x.reshape(b * t, *x.shape[2:]))
      h, wd = y.shape[1:3]
      y = nn.relu(y).reshape(b, t, h * wd, w)
      x = nn.relu(_time_conv(w, 3, f"block{i}_time")(y)).reshape(b, t, h, wd, w)
      self.sow("intermediates", f"block{i}", x)
    self.sow("intermediates", "pool", jnp.mean(x, axis=(1, 2, 3)))
    return x


class Decoder(nn.Module):
  predict_frames: int
  channels: int
  width: int
  upsamplings: int

  @nn.compact
  def __call__(self, h: jax.Array) -> jax.Array:
    b, k, hh, ww, f = h.shape
    x = jnp.moveaxis(h, 1, 3).reshape(b, hh, ww, k * f)  # time folded into channels
    x = nn.relu(_conv2(self.width, 3, 1, "fold")(x))
    x = nn.relu(_conv2(self.width, 3, 1, "mix")(x))
    s, p, c = 1 << self.upsamplings, self.predict_frames, self.channels
    x = _conv2(p * c * s * s, 3, 1, "frames")(x)  # every s x s output patch, all P frames
    x = x.reshape(b, hh, ww, s, s, p, c)  # depth to space (pixel shuffle)
    return jnp.transpose(x, (0, 5, 1, 3, 2, 4, 6)).reshape(b, p, hh * s, ww * s, c)


class PredictiveAutoencoder(nn.Module):
  """``(B, K, H, W, C)`` context frames -> ``(B, P, H, W, C)`` predicted next frames."""

  widths: Sequence[int]
  predict_frames: int
  channels: int
  decoder_width: int

  def setup(self):
    self.encoder = Encoder(tuple(self.widths))
    self.decoder = Decoder(
      self.predict_frames, self.channels, self.decoder_width, len(tuple(self.widths))
    )

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # no batch norm / dropout: one mode
    return self.decoder(self.encoder(x))

  def encode(self, x: jax.Array) -> jax.Array:
    return self.encoder(x)

  def feature_layers(self) -> tuple[str, ...]:
    return (*(f"block{i}" for i in range(1, len(tuple(self.widths)) + 1)), "pool")
