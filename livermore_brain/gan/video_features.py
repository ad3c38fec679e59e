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
import os

import jax
import jax.numpy as jnp
import numpy as np

from livermore_brain import sharding as shd
from livermore_brain.eval import extractor
from livermore_brain.gan.features import GanFeatures
from livermore_brain.gan.video import VideoGanTask
from livermore_brain.train import run_dir


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

  @classmethod
  def load(cls, workdir: str, step: int | None = None, devices=None, mesh=None):
    workdir = os.path.abspath(os.path.expanduser(workdir))
    config = run_dir.load_config(workdir)
    task = VideoGanTask(config)
    mesh = mesh if mesh is not None else extractor.make_mesh(config, devices)
    rules = shd.rules_from_config(config.get("rules"))
    state, meta = run_dir.restore(workdir, task, mesh, rules, step)
    return cls(task, state.d_params, state.d_stats, mesh, rules, config, int(meta["step"]), workdir)

  @property
  def input_shape(self) -> tuple[int, int, int]:
    return self.task.input_shape

  @property
  def clip_shape(self) -> tuple[int, int, int, int]:
    return self.task.clip_shape

  def feature_shape(self, layer: str, pool: int | None = None) -> tuple[int, int, int]:
    self._check_layer(layer)
    x = jax.ShapeDtypeStruct((1, *self.clip_shape), jnp.float32)
    shape = tuple(jax.eval_shape(self._apply, self.params, self.batch_stats, x)[layer][0].shape[1:])
    if len(shape) == 1:
      return 1, 1, int(shape[0])
    _, h, w, c = shape
    if pool:
      h, w = len(extractor.pool_bins(h, pool)), len(extractor.pool_bins(w, pool))
    return int(h), int(w), int(c)

  def _feature_fn(self, layer: str, pool, pool_mode: str):
    self._check_layer(layer)

    def fn(params, batch_stats, clips):
      m = pool_time(self._apply(params, batch_stats, clips)[layer][0], pool_mode)
      f = extractor.pool_images(m, pool, pool_mode)
      return f.reshape(f.shape[0], -1)

    return fn

  def stream(self, clips, layer: str, pool: int | None = None, *, pool_mode="avg", batch_size=64):
    cache = self.__dict__.setdefault("_jit_cache", {})
    key = (layer, pool, pool_mode)
    if key not in cache:
      out_sh = shd.batch_sharding(self.mesh, self.rules, ndim=2)
      cache[key] = jax.jit(self._feature_fn(layer, pool, pool_mode), out_shardings=out_sh)
    fn, clip_sh = cache[key], shd.batch_sharding(self.mesh, self.rules, ndim=5)
    batches = [clips] if isinstance(clips, np.ndarray) or hasattr(clips, "__array__") else clips
    multiple = self.mesh.shape["data"]
    bs = -(-max(1, int(batch_size)) // multiple) * multiple
    for batch in batches:
      batch = np.asarray(batch, np.float32)
      if batch.ndim != 5 or tuple(batch.shape[1:]) != tuple(self.clip_shape):
        raise ValueError(
          f"clips must be (N, {', '.join(map(str, self.clip_shape))}), got {batch.shape}"
        )
      for lo in range(0, batch.shape[0], bs):  # fixed-size batches (the last padded): one compile
        part = batch[lo : lo + bs]
        m = part.shape[0]
        if m < bs:
          part = np.concatenate([part, np.repeat(part[-1:], bs - m, axis=0)])
        out = fn(self.params, self.batch_stats, jax.device_put(part, clip_sh))
        yield np.asarray(jax.device_get(out))[:m]
