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
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding

from livermore_brain import sharding as shd
from livermore_brain.eval import extractor
from livermore_brain.train import run_dir
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
class ClipFeatures:
  task: VideoPredictiveTask
  params: dict
  mesh: Mesh
  rules: tuple = shd.DEFAULT_RULES
  config: ml_collections.ConfigDict | None = None
  step: int = 0
  workdir: str | None = None
  name: str = "trained"
  family = "video_predictive"

  @classmethod
  def load(cls, workdir: str, step: int | None = None, devices=None, mesh=None) -> ClipFeatures:
    workdir = os.path.abspath(os.path.expanduser(workdir))
    config = run_dir.load_config(workdir)
    task = VideoPredictiveTask(config)
    mesh = mesh if mesh is not None else extractor.make_mesh(config, devices)
    rules = shd.rules_from_config(config.get("rules"))
    state, meta = run_dir.restore(workdir, task, mesh, rules, step)
    return cls(task, state.params, mesh, rules, config, int(meta["step"]), workdir)

  @property
  def arch(self) -> str:
    return self.task.arch

  @property
  def input_shape(self) -> tuple[int, int, int, int]:
    return self.task.clip_input_shape

  @property
  def layers(self) -> tuple[str, ...]:
    return self.task.feature_layers()

  def random_network(self, seed: int | None = None) -> ClipFeatures:
    """The same encoder and preprocessing with fresh weights from ``seed`` (default: the run's
    seed + 1, never its training seed)."""
    if seed is None:
      seed = int(self.config.get("seed", 0)) + 1 if self.config is not None else 1
    sh = self.task.state_shardings(self.mesh, self.rules)
    state = self.task.init_state(jax.random.key(int(seed)), self.mesh, sh)
    return dataclasses.replace(self, params=state.params, step=0, name=f"random (seed {seed})")

  def _check_layer(self, layer: str) -> None:
    if layer not in self.layers:
      raise ValueError(f"unknown layer {layer!r}; this network exports {', '.join(self.layers)}")

  def _maps(self, params, x):
    _, inter = self.task.model.apply(
      {"params": params}, x, method="encode", mutable=["intermediates"]
    )
    maps = inter["intermediates"]["encoder"]  # sown by the Encoder submodule
    return {k: v[0] for k, v in maps.items()}

  def feature_shape(self, layer: str, pool: int | None = None) -> tuple[int, int, int]:
    """``(h, w, c)`` of one example's features (``(1, 1, C)`` for ``pool``)."""
    self._check_layer(layer)
    x = jax.ShapeDtypeStruct((1, *self.input_shape), jnp.float32)
    shape = jax.eval_shape(lambda p, x: fold_time(self._maps(p, x)[layer]), self.params, x).shape
    if len(shape) == 2:
      return 1, 1, int(shape[1])
    _, h, w, c = shape
    if pool:
      h, w = len(extractor.pool_bins(h, pool)), len(extractor.pool_bins(w, pool))
    return int(h), int(w), int(c)

  def _feature_fn(self, layer: str, pool, pool_mode: str):
    self._check_layer(layer)
    data_cfg = self.config.get("data", ml_collections.ConfigDict()) if self.config else {}
    normalize = bool(data_cfg.get("normalize", False))
    eps = float(data_cfg.get("normalize_eps", 0.01))

    def fn(params, clips):
      x = clips.astype(jnp.float32)
      if normalize:
        x = normalize_clips(x, eps)
      f = extractor.pool_images(fold_time(self._maps(params, x)[layer]), pool, pool_mode)
      return f.reshape(f.shape[0], -1)

    return fn

  def trainable(self, layer: str, pool: int | None = None, pool_mode: str = "avg"):
    """``(params, fn)`` for fine-tuning (`eval.finetune`): the encoder's parameters and the pure
    ``fn(params, clips in [0, 1]) -> (B, M)`` of the layer (weights-independent: the random
    twin's params fit it)."""
    return self.params, self._feature_fn(layer, pool, pool_mode)

  def _fn(self, layer: str, pool, pool_mode: str):
    cache = self.__dict__.setdefault("_jit_cache", {})
    key = (layer, pool, pool_mode)
    if key not in cache:
      fn = self._feature_fn(layer, pool, pool_mode)
      in_sh = NamedSharding(self.mesh, shd.logical_to_spec(("batch",) + (None,) * 4, self.rules))
      out_sh = shd.batch_sharding(self.mesh, self.rules, ndim=2)
      cache[key] = (jax.jit(fn, out_shardings=out_sh), in_sh)
    return cache[key]

  def stream(self, clips, layer: str, pool: int | None = None, *, pool_mode="avg", batch_size=256):
    fn, in_sh = self._fn(layer, pool, pool_mode)
    yield from extractor.stream_batches(
      lambda b: fn(self.params, jax.device_put(b, in_sh)),
      clips,
      batch_size=batch_size,
      multiple=self.mesh.shape["data"],
      want_shape=self.input_shape,
    )

  def features(self, clips, layer: str, pool: int | None = None, **kw) -> np.ndarray:
    """All features ``(N, M)`` of ``clips`` ``(N, K, H, W, C)`` in [0, 1]."""
    return extractor.concat(self.stream(clips, layer, pool, **kw))
