"""One feature extractor for every flax family (an `eval.extractor.FeatureExtractor`).

A flax family's run holds a network whose ``apply(..., mutable=["intermediates"])`` sows one map
per exported layer. What differs between families is small — which part of the training state
is the feature network, how images are prepared for it, how it is called — so a family
subclasses `FlaxFeatures` and says exactly that:

    class ConvFeatures(FlaxFeatures):
      family = "supervised"
      task_class = SupervisedTask

      @staticmethod
      def network_state(state):              # -> (params, batch_stats) of the feature network
        return state.params, state.batch_stats

      def intermediates(self, params, batch_stats, images):   # images (B, H, W, C) in [0, 1]
        ...                                  # -> {layer: (map,)}, inference mode

Clip families take ``(B, T, H, W, C)`` (``input_shape`` of length 4) and turn each sown map into
a batch-major image map in `readout_map` (fold time into channels, or pool it).

Everything else is shared: restoring a run (`load`), the random-initialization twin
(`random_network`: the same task's fresh initial state, seed = the run's seed + 1 by default),
`feature_shape`, pooled and flattened `features` over fixed-shape sharded batches, and the pure
`trainable` function for fine-tuning with batch-norm statistics frozen.
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
from livermore_brain.train import run_dir


@dataclasses.dataclass
class FlaxFeatures:
  task: object
  params: dict
  batch_stats: dict
  mesh: Mesh
  rules: tuple = shd.DEFAULT_RULES
  config: ml_collections.ConfigDict | None = None
  step: int = 0
  workdir: str | None = None
  name: str = "trained"
  family = "flax"
  task_class = None  # the family's Task class: built from the run's config by `load`

  # ---- what a family says ----------------------------------------------------------------------
  @staticmethod
  def network_state(state) -> tuple[dict, dict]:
    """``(params, batch_stats)`` of the feature network within the family's training state."""
    raise NotImplementedError

  def intermediates(self, params, batch_stats, images) -> dict:
    """The sown maps ``{layer: (map,)}`` of ``images`` ``(B, H, W, C)`` in [0, 1], the run's
    preprocessing included, in inference mode. Pure: it may read only this extractor's task and
    preprocessing, never ``self.params`` (the random twin's params must fit it)."""
    raise NotImplementedError

  def readout_map(self, m, pool_mode: str):
    """A sown map as a batch-major ``(B, h, w, c)`` map (or ``(B, c)`` vector) before spatial
    pooling; clip families reduce or fold the time axis here. Default: as is."""
    return m

  @classmethod
  def extra(cls, workdir: str, config, task) -> dict:
    """More dataclass fields a subclass restores beside the weights (e.g. a whitening)."""
    return {}

  @staticmethod
  def view(task):
    """What the extractor keeps as ``task`` (the family's task, or a view of part of it)."""
    return task

  # ---- shared ----------------------------------------------------------------------------------
  @classmethod
  def load(cls, workdir: str, step: int | None = None, devices=None, mesh=None):
    workdir = os.path.abspath(os.path.expanduser(workdir))
    config = run_dir.load_config(workdir)
    task = cls.task_class(config)
    mesh = mesh if mesh is not None else extractor.make_mesh(config, devices)
    rules = shd.rules_from_config(config.get("rules"))
    state, meta = run_dir.restore(workdir, task, mesh, rules, step)
    params, batch_stats = cls.network_state(state)
    return cls(
      task=cls.view(task),
      params=params,
      batch_stats=batch_stats,
      mesh=mesh,
      rules=rules,
      config=config,
      step=int(meta["step"]),
      workdir=workdir,
      **cls.extra(workdir, config, task),
    )

  def training_task(self):
    """The family's Task (``task`` may be a view of part of it)."""
    return self.task

  @property
  def input_shape(self) -> tuple[int, int, int]:
    return self.task.input_shape

  @property
  def layers(self) -> tuple[str, ...]:
    return self.task.feature_layers()

  def random_network(self, seed: int | None = None):
    """The same network and preprocessing with the fresh initial weights (and initial batch-norm
    statistics) of the whole training state drawn from ``seed`` (default: the run's seed + 1,
    never its training seed)."""
    if seed is None:
      seed = int(self.config.get("seed", 0)) + 1 if self.config is not None else 1
    task = self.training_task()
    sh = task.state_shardings(self.mesh, self.rules)
    params, batch_stats = self.network_state(
      task.init_state(jax.random.key(int(seed)), self.mesh, sh)
    )
    return dataclasses.replace(
      self, params=params, batch_stats=batch_stats, step=0, name=f"random (seed {seed})"
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
      maps = lambda p, s, x: {
        k: self.readout_map(v[0], "avg") for k, v in self.intermediates(p, s, x).items()
      }
      inter = jax.eval_shape(maps, self.params, self.batch_stats, x)
      shapes = self.__dict__["_shapes"] = {k: tuple(v.shape[1:]) for k, v in inter.items()}
    shape = shapes[layer]
    if len(shape) == 1:
      return 1, 1, int(shape[0])
    h, w, c = shape
    if pool:
      h, w = len(extractor.pool_bins(h, pool)), len(extractor.pool_bins(w, pool))
    return int(h), int(w), int(c)

  def _feature_fn(self, layer: str, pool, pool_mode: str):
    """Pure ``(params, batch_stats, images) -> (B, M)``: the layer's map, pooled, flattened."""
    self._check_layer(layer)

    def fn(params, batch_stats, images):
      f = self.readout_map(self.intermediates(params, batch_stats, images)[layer][0], pool_mode)
      f = extractor.pool_images(f, pool, pool_mode)
      return f.reshape(f.shape[0], -1)

    return fn

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

  def stream(self, images, layer: str, pool: int | None = None, *, pool_mode="avg", batch_size=256):
    cache = self.__dict__.setdefault("_jit_cache", {})
    key = (layer, pool, pool_mode)
    if key not in cache:
      out_sh = shd.batch_sharding(self.mesh, self.rules, ndim=2)
      cache[key] = jax.jit(self._feature_fn(layer, pool, pool_mode), out_shardings=out_sh)
    ndim = 1 + len(self.input_shape)  # images (B, H, W, C) or clips (B, T, H, W, C)
    fn, img_sh = cache[key], shd.batch_sharding(self.mesh, self.rules, ndim=ndim)
    yield from extractor.stream_batches(
      lambda b: fn(self.params, self.batch_stats, jax.device_put(b, img_sh)),
      images,
      batch_size=batch_size,
      multiple=self.mesh.shape["data"],
      want_shape=self.input_shape,
    )

  def features(self, images, layer: str, pool: int | None = None, **kw) -> np.ndarray:
    """All features ``(N, M)`` of ``images`` ``(N, *input_shape)`` in [0, 1]."""
    return extractor.concat(self.stream(images, layer, pool, **kw))
