"""The video discriminator's layers as clip features of a ``video_gan`` run.

    fx = VideoGanFeatures.load("runs/video_features-gan_cpu")
    fx.layers                                  # ("conv8x32", "conv8x16", ..., "logits")
    x = fx.features(clips, "conv8x8", pool=2)  # (N, 2 * 2 * C); clips (N, T, H, W, C) in [0, 1]
    rnd = fx.random_network()                  # same discriminator, fresh weights

Clips go through the discriminator at the full size (the last stage of every curriculum) in
inference mode (batch norm with its running statistics). A layer's map ``(N, t, h, w, C)`` is
pooled over time (the mean, or ``pool_mode``'s reduction over all frames) and then in space to a
``pool x pool`` grid (`eval.extractor.pool_images`), flattened in ``(y, x, c)`` order — so a
feature is the same size whatever the clip length, and the transfer table's probe sees a
fixed-length vector per clip.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from livermore_brain.gan.features import GanFeatures
from livermore_brain.gan.video import VideoGanTask


def pool_time(x: jax.Array, mode: str = "avg") -> jax.Array:
  """``(B, T, H, W, C) -> (B, H, W, C)``: the mean (``avg``), max or RMS (``l2``) over time;
  vectors pass through."""
  if x.ndim != 5:
    return x
  if mode == "max":
    return jnp.max(x, axis=1)
  if mode == "l2":
    return jnp.sqrt(jnp.mean(jnp.square(x), axis=1) + 1e-8)
  return jnp.mean(x, axis=1)


@dataclasses.dataclass
class VideoGanFeatures(GanFeatures):
  family = "video_gan"
  arch = "spatio-temporal dcgan discriminator"
  task_class = VideoGanTask

  @property
  def input_shape(self) -> tuple[int, int, int, int]:
    """``(T, H, W, C)``: the clip the discriminator takes at the full size."""
    return self.task.clip_shape

  @property
  def clip_shape(self) -> tuple[int, int, int, int]:
    return self.task.clip_shape

  def readout_map(self, m, pool_mode: str):
    return pool_time(m, pool_mode)
