"""Features of a supervised convnet run (an `eval.extractor.FeatureExtractor`).

    fx = ConvFeatures.load("runs/resception-cpu")
    fx.layers                                   # ("stem", "block1", ..., "pool", "logits")
    x = fx.features(images, "block3", pool=2)   # (N, 2 * 2 * C) numpy; images in [0, 1]
    rnd = fx.random_network()                   # same architecture, fresh weights

Images go through the run's preprocessing (per-image normalization and whitening when its data
config used them), then the network in inference mode (batch norm with the running statistics);
a layer's feature is its sown map (`models.convnets`), optionally average/max pooled to a
``pool x pool`` grid, flattened per example in ``(y, x, c)`` order. Parameters keep the run's
shardings; batches are split over ``data`` and padded to one shape.
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
from livermore_brain.supervised.task import SupervisedTask
from livermore_brain.train import run_dir


@dataclasses.dataclass
class ConvFeatures:
  task: SupervisedTask
  params: dict
  batch_stats: dict
  mesh: Mesh
  rules: tuple = shd.DEFAULT_RULES
  whitening: object = None
  config: ml_collections.ConfigDict | None = None
  step: int = 0
  workdir: str | None = None
  name: str = "trained"
  family = "supervised"

  @classmethod
  def load(cls, workdir: str, step: int | None = None, devices=None, mesh=None) -> ConvFeatures:
    workdir = os.path.abspath(os.path.expanduser(workdir))
    config = run_dir.load_config(workdir)
    task = SupervisedTask(config)
    mesh = mesh if mesh is not None else extractor.make_mesh(config, devices)
    rules = shd.rules_from_config(config.get("rules"))
    state, meta = run_dir.restore(workdir, task, mesh, rules, step)
    return cls(
      task=task,
      params=state.params,
      batch_stats=state.batch_stats,
      mesh=mesh,
      rules=rules,
      whitening=extractor.run_whitening(workdir, config, task.input_shape),
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

  @property
  def arch(self) -> str:
    return self.task.arch

  def random_network(self, seed: int | None = None) -> ConvFeatures:
    """The same architecture and preprocessing with fresh initial weights (and initial batch-norm
    statistics) from ``seed`` (default: the run's seed + 1, never its training seed)."""
    if seed is None:
      seed = int(self.config.get("seed", 0)) + 1 if self.config is not None else 1
    sh = self.task.state_shardings(self.mesh, self.rules)
    state = self.task.init_state(jax.random.key(int(seed)), self.mesh, sh)
    return dataclasses.replace(
      self, params=state.params, batch_stats=state.batch_stats, step=0, name=f"random (seed {seed})"
    )

  def _check_layer(self, layer: str) -> None:
    if layer not in self.layers:
      raise ValueError(f"unknown layer {layer!r}; this network exports {', '.join(self.layers)}")

  def feature_shape(self, layer: str, pool: int | None = None) -> tuple[int, int, int]:
    """``(h, w, c)`` of one example's features (``(1, 1, C)`` for a vector layer)."""
    self._check_layer(layer)
    shapes = self.__dict__.get("_shapes")
    if shapes is None:
      x = jax.ShapeDtypeStruct((1, *self.input_shape), jnp.float32)
      apply = lambda p, s, x: self.task.model.apply(
        {"params": p, "batch_stats": s}, x, train=False, mutable=["intermediates"]
      )[1]
      inter = jax.eval_shape(apply, self.params, self.batch_stats, x)["intermediates"]
      shapes = self.__dict__["_shapes"] = {k: tuple(v[0].shape[1:]) for k, v in inter.items()}
    shape = shapes[layer]
    if len(shape) == 1:
      return 1, 1, int(shape[0])
    h, w, c = shape
    if pool:
      h, w = len(extractor.pool_bins(h, pool)), len(extractor.pool_bins(w, pool))
    return int(h), int(w), int(c)

  def trainable(self, layer: str, pool: int | None = None, pool_mode: str = "avg"):
    """``(params, fn)`` for fine-tuning (`eval.finetune`): ``{"params", "batch_stats"}`` of this
    network and the pure, differentiable ``fn(params, images in [0, 1]) -> (B, M)`` of the layer,
    in inference mode. The batch-norm statistics stay frozen: ``fn`` reads them behind
    ``stop_gradient`` (zero gradients, so Adam leaves them exactly as they are). ``fn`` depends
    on the architecture and preprocessing only, so the random twin's params work with it."""
    fn = self._feature_fn(layer, pool, pool_mode)

    def trainable_fn(params, images):
      return fn(params["params"], jax.lax.stop_gradient(params["batch_stats"]), images)

    return {"params": self.params, "batch_stats": self.batch_stats}, trainable_fn

  def _feature_fn(self, layer: str, pool, pool_mode: str):
    """Pure ``(params, batch_stats, images) -> (B, M)``, the run's preprocessing included."""
    self._check_layer(layer)
    data_cfg = self.config.get("data", ml_collections.ConfigDict()) if self.config else {}
    normalize = bool(data_cfg.get("normalize", True))
    eps = float(data_cfg.get("normalize_eps", 0.01))
    kernel = None if self.whitening is None else self.whitening.kernel
    model = self.task.model

    def fn(params, batch_stats, images):
      x = images.astype(jnp.float32)
      if normalize:
        x = extractor.normalize_images(x, eps)
      if kernel is not None:
        x = extractor.whiten_images(x, kernel)
      _, inter = model.apply(
        {"params": params, "batch_stats": batch_stats}, x, train=False, mutable=["intermediates"]
      )
      f = extractor.pool_images(inter["intermediates"][layer][0], pool, pool_mode)
      return f.reshape(f.shape[0], -1)

    return fn

  def _fn(self, layer: str, pool, pool_mode: str):
    self._check_layer(layer)
    cache = self.__dict__.setdefault("_jit_cache", {})
    key = (layer, pool, pool_mode)
    if key in cache:
      return cache[key]
    fn = self._feature_fn(layer, pool, pool_mode)
    img_sh = shd.batch_sharding(self.mesh, self.rules)
    out_sh = shd.batch_sharding(self.mesh, self.rules, ndim=2)
    jitted = jax.jit(fn, out_shardings=out_sh)
    cache[key] = (jitted, img_sh)
    return cache[key]

  def stream(self, images, layer: str, pool: int | None = None, *, pool_mode="avg", batch_size=256):
    fn, img_sh = self._fn(layer, pool, pool_mode)
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

  def predict(self, images, batch_size: int = 256) -> np.ndarray:
    """Class predictions ``(N,)`` (argmax of the logits)."""
    return np.argmax(self.features(images, "logits", batch_size=batch_size), axis=1)
