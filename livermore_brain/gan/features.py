"""The discriminator's layers as features of a GAN run (an `eval.extractor.FeatureExtractor`).

    fx = GanFeatures.load("runs/gan-cpu")
    fx.layers                                  # ("conv32", "conv16", "conv8", "conv4", "logits")
    x = fx.features(images, "conv8", pool=2)   # (N, 2 * 2 * C) numpy; images in [0, 1]
    rnd = fx.random_network()                  # same discriminator, fresh weights

Images in [0, 1] are mapped to [-1, 1] (the GAN's input range) and go through the discriminator
at the full resolution (the last stage of every curriculum) in inference mode: batch norm with
its running statistics, which were accumulated over mixed real and fake batches during training.
A layer's feature is its sown map, optionally average/max pooled to a ``pool x pool`` grid,
flattened per example in ``(y, x, c)`` order (`eval.flax_features`).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from livermore_brain.eval.flax_features import FlaxFeatures
from livermore_brain.gan.task import GanTask


@dataclasses.dataclass
class GanFeatures(FlaxFeatures):
  family = "gan"
  arch = "dcgan discriminator"
  task_class = GanTask

  @staticmethod
  def network_state(state):
    return state.d_params, state.d_stats

  def intermediates(self, params, batch_stats, images):
    d = self.task.discriminator
    x = images.astype(jnp.float32) * 2.0 - 1.0
    _, inter = d.apply(
      {"params": params, "batch_stats": batch_stats},
      x,
      d.max_level,
      1.0,
      train=False,
      mutable=["intermediates"],
    )
    return inter["intermediates"]
