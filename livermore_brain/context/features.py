"""Features of a context-prediction run: one tower of the shared-weight network, over its named
layers (an `eval.extractor.FeatureExtractor`; the supervised `ConvFeatures` machinery).

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
import os

import jax

from livermore_brain import sharding as shd
from livermore_brain.context.model import standardize
from livermore_brain.context.task import ContextTask
from livermore_brain.eval import extractor
from livermore_brain.supervised.features import ConvFeatures
from livermore_brain.train import run_dir


class TowerView:
  """What `ConvFeatures` asks of its task, for the tower of a `ContextTask`."""

  def __init__(self, task: ContextTask):
    self.context = task
    self.model = task.tower
    self.arch = task.arch
    self.input_shape = task.patch_shape

  def feature_layers(self) -> tuple[str, ...]:
    return self.context.feature_layers()


@dataclasses.dataclass
class TowerFeatures(ConvFeatures):
  family = "context"

  @classmethod
  def load(cls, workdir: str, step: int | None = None, devices=None, mesh=None) -> TowerFeatures:
    workdir = os.path.abspath(os.path.expanduser(workdir))
    config = run_dir.load_config(workdir)
    task = ContextTask(config)
    mesh = mesh if mesh is not None else extractor.make_mesh(config, devices)
    rules = shd.rules_from_config(config.get("rules"))
    state, meta = run_dir.restore(workdir, task, mesh, rules, step)
    return cls(
      task=TowerView(task),
      params=state.params["tower"],
      batch_stats=state.batch_stats["tower"],
      mesh=mesh,
      rules=rules,
      config=config,
      step=int(meta["step"]),
      workdir=workdir,
    )

  def random_network(self, seed: int | None = None) -> TowerFeatures:
    """The same tower with the fresh initial weights of the whole network drawn from ``seed``
    (default: the run's seed + 1, never its training seed)."""
    if seed is None:
      seed = int(self.config.get("seed", 0)) + 1 if self.config is not None else 1
    ctx = self.task.context
    state = ctx.init_state(
      jax.random.key(int(seed)), self.mesh, ctx.state_shardings(self.mesh, self.rules)
    )
    return dataclasses.replace(
      self,
      params=state.params["tower"],
      batch_stats=state.batch_stats["tower"],
      step=0,
      name=f"random (seed {seed})",
    )

  def _feature_fn(self, layer: str, pool, pool_mode: str):
    self._check_layer(layer)
    tower = self.task.model

    def fn(params, batch_stats, images):
      x = standardize(images)
      _, inter = tower.apply(
        {"params": params, "batch_stats": batch_stats}, x, train=False, mutable=["intermediates"]
      )
      f = extractor.pool_images(inter["intermediates"][layer][0], pool, pool_mode)
      return f.reshape(f.shape[0], -1)

    return fn

  def predict(self, images, batch_size: int = 256):
    raise NotImplementedError("a context-prediction tower has no classes; use features()")
