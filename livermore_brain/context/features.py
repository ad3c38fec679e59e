"""Features of a context-prediction run: one tower of the shared-weight network, over its named
layers (an `eval.extractor.FeatureExtractor` through `eval.flax_features`).

    fx = TowerFeatures.load("runs/context-pair-cpu")
    fx.input_shape                                  # the patch: (P, P, C)
    fx.layers                                       # ("stem", "block1", ..., "pool")
    x = fx.features(images, "block4", pool=2)       # images resampled to P x P by callers
    rnd = fx.random_network()                       # same network, fresh weights

Each image is standardized alone (`context.model.standardize`; in training the K patches of a
sample were standardized together, one image here standing for one sample), then goes through
the tower in inference mode (batch norm with its running statistics).
"""

from __future__ import annotations

import dataclasses

from livermore_brain.context.model import standardize
from livermore_brain.context.task import ContextTask
from livermore_brain.eval.flax_features import FlaxFeatures


class TowerView:
  """The tower of a `ContextTask`, as the extractor sees it (its input is one patch)."""

  def __init__(self, task: ContextTask):
    self.context = task
    self.model = task.tower
    self.arch = task.arch
    self.input_shape = task.patch_shape

  def feature_layers(self) -> tuple[str, ...]:
    return self.context.feature_layers()


@dataclasses.dataclass
class TowerFeatures(FlaxFeatures):
  family = "context"
  task_class = ContextTask
  view = staticmethod(TowerView)

  @staticmethod
  def network_state(state):
    return state.params["tower"], state.batch_stats["tower"]

  @property
  def arch(self) -> str:
    return self.task.arch

  def training_task(self):
    return self.task.context

  def intermediates(self, params, batch_stats, images):
    _, inter = self.task.model.apply(
      {"params": params, "batch_stats": batch_stats},
      standardize(images),
      train=False,
      mutable=["intermediates"],
    )
    return inter["intermediates"]
