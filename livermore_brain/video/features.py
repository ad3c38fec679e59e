"""The encoder's layers as features of a predictive-autoencoder run (an
`eval.extractor.FeatureExtractor` over clips).

    fx = ClipFeatures.load("runs/video_features-cpu")
    fx.input_shape                          # (K, H, W, C): the context frames the encoder takes
    fx.layers                               # ("block1", "block2", "pool")
    x = fx.features(clips, "block2", pool=2)   # (N, 2 * 2 * K * C2) numpy; clips in [0, 1]
    rnd = fx.random_network()               # same encoder, fresh weights

Clips ``(N, K, H, W, C)`` in [0, 1] go through the run's preprocessing (per-clip normalization
when its data config used it), then the encoder. A block's map ``(K, h, w, c)`` is read with
time folded into channels, ``(h, w, K c)`` — motion lives in how the frames differ, so the
frames are kept apart — then optionally pooled over space to a ``pool x pool`` grid and
flattened; ``pool`` is the mean over time and space of the last block (a vector).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from livermore_brain.eval.flax_features import FlaxFeatures
from livermore_brain.video.task import VideoPredictiveTask


def normalize_clips(x: jax.Array, eps: float) -> jax.Array:
  """Per-clip normalization of ``(B, T, H, W, C)`` in [0, 1], as `data.video` does it."""
  axes = tuple(range(1, x.ndim))
  x = x - jnp.mean(x, axis=axes, keepdims=True)
  return x / (jnp.std(x, axis=axes, keepdims=True) + eps)


def fold_time(x: jax.Array) -> jax.Array:
  """``(B, T, h, w, c)`` -> ``(B, h, w, T c)``; vectors pass through."""
  if x.ndim != 5:
    return x
  b, t, h, w, c = x.shape
  return jnp.moveaxis(x, 1, 3).reshape(b, h, w, t * c)


@dataclasses.dataclass
class ClipFeatures(FlaxFeatures):
  family = "video_predictive"
  task_class = VideoPredictiveTask

  @staticmethod
  def network_state(state):
    return state.params, {}  # no batch norm in this autoencoder

  @property
  def arch(self) -> str:
    return self.task.arch

  @property
  def input_shape(self) -> tuple[int, int, int, int]:
    return self.task.clip_input_shape

  def intermediates(self, params, batch_stats, clips):
    data_cfg = self.config.get("data", ml_collections.ConfigDict()) if self.config else {}
    x = clips.astype(jnp.float32)
    if bool(data_cfg.get("normalize", False)):
      x = normalize_clips(x, float(data_cfg.get("normalize_eps", 0.01)))
    _, inter = self.task.model.apply(
      {"params": params}, x, method="encode", mutable=["intermediates"]
    )
    return inter["intermediates"]["encoder"]  # sown by the Encoder submodule

  def readout_map(self, m, pool_mode: str):
    return fold_time(m)
