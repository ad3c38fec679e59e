"""Features of a supervised convnet run (an `eval.extractor.FeatureExtractor`).

    fx = ConvFeatures.load("runs/resception-cpu")
    fx.layers                                   # ("stem", "block1", ..., "pool", "logits")
    x = fx.features(images, "block3", pool=2)   # (N, 2 * 2 * C) numpy; images in [0, 1]
    rnd = fx.random_network()                   # same architecture, fresh weights

Images go through the run's preprocessing (per-image normalization and whitening when its data
config used them), then the network in inference mode (batch norm with the running statistics);
a layer's feature is its sown map (`models.convnets`), optionally average/max pooled to a
``pool x pool`` grid, flattened per example in ``(y, x, c)`` order. Parameters keep the run's
shardings; batches are split over ``data`` and padded to one shape (`eval.flax_features`).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import ml_collections
import numpy as np

from livermore_brain.eval import extractor
from livermore_brain.eval.flax_features import FlaxFeatures
from livermore_brain.supervised.task import SupervisedTask


@dataclasses.dataclass
class ConvFeatures(FlaxFeatures):
  whitening: object = None
  family = "supervised"
  task_class = SupervisedTask

  @staticmethod
  def network_state(state):
    return state.params, state.batch_stats

  @classmethod
  def extra(cls, workdir, config, task) -> dict:
    return {"whitening": extractor.run_whitening(workdir, config, task.input_shape)}

  @property
  def arch(self) -> str:
    return self.task.arch

  def intermediates(self, params, batch_stats, images):
    data_cfg = self.config.get("data", ml_collections.ConfigDict()) if self.config else {}
    x = images.astype(jnp.float32)
    if bool(data_cfg.get("normalize", True)):
      x = extractor.normalize_images(x, float(data_cfg.get("normalize_eps", 0.01)))
    if self.whitening is not None:
      x = extractor.whiten_images(x, self.whitening.kernel)
    _, inter = self.task.model.apply(
      {"params": params, "batch_stats": batch_stats}, x, train=False, mutable=["intermediates"]
    )
    return inter["intermediates"]

  def predict(self, images, batch_size: int = 256) -> np.ndarray:
    """Class predictions ``(N,)`` (argmax of the logits)."""
    return np.argmax(self.features(images, "logits", batch_size=batch_size), axis=1)
