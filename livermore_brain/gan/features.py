"""The discriminator's layers as features of a GAN run (an `eval.extractor.FeatureExtractor`).

    fx = GanFeatures.load("runs/gan-cpu")
    fx.layers                                  # ("conv32", "conv16", "conv8", "conv4", "logits")
    x = fx.features(images, "conv8", pool=2)   # (N, 2 * 2 * C) numpy; images in [0, 1]
    rnd = fx.random_network()                  # same discriminator, fresh weights

Images in [0, 1] are mapped to [-1, 1] (the GAN's input range) and go through the discriminator
at the full resolution (the last stage of every curriculum) in inference mode: batch norm with
its running statistics, which were accumulated over mixed real and fake batches during training.
A layer's feature is its sown map, optionally average/max pooled to a ``pool x pool`` grid,
flattened per example in ``(y, x, c)`` order.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from livermore_brain import sharding as shd
from livermore_brain.eval import extractor
from livermore_brain.gan.task import GanTask
from livermore_brain.train import run_dir


@dataclasses.dataclass
class GanFeatures:
  task: GanTask
  params: dict
  batch_stats: dict
  mesh: Mesh
  rules: tuple = shd.DEFAULT_RULES
  config: ml_collections.ConfigDict | None = None
  step: int = 0
  workdir: str | None = None
  name: str = "trained"
  family = "gan"
  arch = "dcgan discriminator"

  @classmethod
  def load(cls, workdir: str, step: int | None = None, devices=None, mesh=None) -> GanFeatures:
    workdir = os.path.abspath(os.path.expanduser(workdir))
    config = run_dir.load_config(workdir)
    task = GanTask(config)
    mesh = mesh if mesh is not None else extractor.make_mesh(config, devices)
    rules = shd.rules_from_config(config.get("rules"))
    state, meta = run_dir.restore(workdir, task, mesh, rules, step)
    return cls(
      task=task,
      params=state.d_params,
      batch_stats=state.d_stats,
      mesh=mesh,
      rules=rules,
      config=config,
      step=int(meta["step"]),
      workdir=workdir,
    )

  @property
  def input_shape(self) -> tuple[int, int, int]:
    return self.task.input_shape

  @property
  def layers(self) -> tuple[str, ...]:
    return self.task.feature_layers()

  def random_network(self, seed: int | None = None) -> GanFeatures:
    """The same discriminator with fresh initial weights from ``seed`` (default: the run's seed
    + 1, never its training seed)."""
    if seed is None:
      seed = int(self.config.get("seed", 0)) + 1 if self.config is not None else 1
    sh = self.task.state_shardings(self.mesh, self.rules)
    state = self.task.init_state(jax.random.key(int(seed)), self.mesh, sh)
    return dataclasses.replace(
      self, params=state.d_params, batch_stats=state.d_stats, step=0, name=f"random (seed {seed})"
    )

  def _check_layer(self, layer: str) -> None:
    if layer not in self.layers:
      raise ValueError(
        f"unknown layer {layer!r}; this discriminator exports {', '.join(self.layers)}"
      )

  def _apply(self, params, batch_stats, images):
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

  def feature_shape(self, layer: str, pool: int | None = None) -> tuple[int, int, int]:
    self._check_layer(layer)
    x = jax.ShapeDtypeStruct((1, *self.input_shape), jnp.float32)
    shape = tuple(jax.eval_shape(self._apply, self.params, self.batch_stats, x)[layer][0].shape[1:])
    if len(shape) == 1:
      return 1, 1, int(shape[0])
    h, w, c = shape
    if pool:
      h, w = len(extractor.pool_bins(h, pool)), len(extractor.pool_bins(w, pool))
    return int(h), int(w), int(c)

  def _feature_fn(self, layer: str, pool, pool_mode: str):
    self._check_layer(layer)

    def fn(params, batch_stats, images):
      f = extractor.pool_images(self._apply(params, batch_stats, images)[layer][0], pool, pool_mode)
      return f.reshape(f.shape[0], -1)

    return fn

  def trainable(self, layer: str, pool: int | None = None, pool_mode: str = "avg"):
    """``(params, fn)`` for fine-tuning (`eval.finetune`); batch-norm statistics frozen."""
    fn = self._feature_fn(layer, pool, pool_mode)

    def trainable_fn(params, images):
      return fn(params["params"], jax.lax.stop_gradient(params["batch_stats"]), images)

    return {"params": self.params, "batch_stats": self.batch_stats}, trainable_fn

  def stream(self, images, layer: str, pool: int | None = None, *, pool_mode="avg", batch_size=256):
    cache = self.__dict__.setdefault("_jit_cache", {})
    key = (layer, pool, pool_mode)
    if key not in cache:
      out_sh = shd.batch_sharding(self.mesh, self.rules, ndim=2)
      cache[key] = jax.jit(self._feature_fn(layer, pool, pool_mode), out_shardings=out_sh)
    fn, img_sh = cache[key], shd.batch_sharding(self.mesh, self.rules)
    yield from extractor.stream_batches(
      lambda b: fn(self.params, self.batch_stats, jax.device_put(b, img_sh)),
      images,
      batch_size=batch_size,
      multiple=self.mesh.shape["data"],
      want_shape=self.input_shape,
    )

  def features(self, images, layer: str, pool: int | None = None, **kw) -> np.ndarray:
    """All features ``(N, M)`` of ``images`` ``(N, H, W, C)`` in [0, 1]."""
    return extractor.concat(self.stream(images, layer, pool, **kw))
