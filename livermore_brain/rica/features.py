"""Features of a trained RICA brain (an `eval.extractor.FeatureExtractor`): any layer's normalized output for a batch of images.

`BrainFeatures.load(workdir)` reads a run's config and newest verified checkpoint (`rica.run.load`)
onto a device mesh, and its input whitening (``<workdir>/whitening.npz``). Then::

    bf = BrainFeatures.load("runs/rica_yfcc-cpu")
    x = bf.features(images, "layer3")              # (N, M) numpy, images in [0, 1]
    x = bf.features(images, "layer1", pool=2)      # layer 1 average-pooled to a 2x2 grid
    rnd = bf.random_network()                      # same architecture, fresh random weights

What a feature is. Images ``(N, H, W, C)`` in [0, 1] at the network's input size go through the
training preprocessing — per-image normalization ``(x - mean) / (std + eps)``, then the run's ZCA
whitening filter with half-sample mirror padding (`data.whitening`) — unless ``preprocessed=True``
(batches from the training pipeline already are). Layer ``i``'s features are its *normalized
output map* (encode -> grid -> LCN, `brain.layer_output`), optionally pooled over space to a
``pool x pool`` grid (adaptive bins: average or max), flattened per example in ``(y, x, k)``
order. A dense layer's map is ``1 x 1 x K``, so its features are its K neurons. The network uses
``state.params`` (the newest filters), not the pipeline's forward copies.

Sharded like training. The mesh is the run's ``config.mesh`` when it fits the devices at hand
(else all devices on ``model``, as `rica.run.load` does), parameters keep the run's shardings
(logical axis rules from the config), the batch is split over ``data`` and patches are constrained
to ``(locations -> model, batch -> data)`` exactly as in the training step. Batches are padded to
a fixed size (a multiple of the ``data`` axis), so each feature function compiles once.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding

from livermore_brain import sharding as shd
from livermore_brain.data import whitening as whitening_lib
from livermore_brain.eval import extractor
from livermore_brain.eval.extractor import (  # noqa: F401 (re-exported)
  POOL_MODES,
  make_mesh,
  normalize_images,
  pool_bins,
  whiten_images,
)
from livermore_brain.layers import rica as rica_layer
from livermore_brain.models import brain
from livermore_brain.rica import run as run_lib
from livermore_brain.train import run_dir

TAPS = ("output", "encode")


def shrink_images(x: jax.Array, scale: float) -> jax.Array:
  """``(B, H, W, C)`` images shrunk by ``scale`` (bilinear, antialiased) and centred in the same
  frame, the border filled with edge values (MNIST's black background); 1.0: as is."""
  if scale >= 1.0:
    return x
  b, h, w, c = x.shape
  sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
  y = jax.image.resize(x, (b, sh, sw, c), "linear", antialias=True)
  top, left = (h - sh) // 2, (w - sw) // 2
  return jnp.pad(y, ((0, 0), (top, h - sh - top), (left, w - sw - left), (0, 0)), mode="edge")


def pool_map(x: jax.Array, pool: int | None, mode: str = "avg") -> jax.Array:
  """Pool a spatial-major map ``(H, W, B, K)`` to ``(g, g, B, K)`` (``pool`` = g; None/0: as is);
  `extractor.pool_images` in RICA's layout."""
  if not pool:
    return x
  y = extractor.pool_images(jnp.transpose(x, (2, 0, 1, 3)), pool, mode)
  return jnp.transpose(y, (1, 2, 0, 3))


@dataclasses.dataclass
class BrainFeatures:
  """A network (spec + sharded params) with the preprocessing of the run it came from."""

  spec: brain.NetworkSpec
  params: tuple
  mesh: Mesh
  rules: tuple = shd.DEFAULT_RULES
  whitening: whitening_lib.Whitening | None = None
  normalize_eps: float = 0.01
  config: ml_collections.ConfigDict | None = None
  step: int = 0
  workdir: str | None = None
  name: str = "trained"
  # How a layer is read out (`with_readout`; defaults measured in docs/analysis.md, "Ablation").
  readout: str = "raw"  # extractor.READOUTS, applied before spatial pooling
  tap: str = "output"  # output: the layer's normalized map (after LCN) | encode: z, before LCN
  group: int = 1  # L2-pool groups of this many neighbouring features (1: none)
  input_scale: float = 1.0  # images shrunk by this factor, centred, border padded (edge values)
  family = "rica"

  @property
  def input_shape(self) -> tuple[int, int, int]:
    return tuple(self.spec.input_shape)

  @property
  def layers(self) -> tuple[str, ...]:
    return tuple(s.name for s in self.spec.layers)

  # ---- construction -------------------------------------------------------------------------
  @classmethod
  def load(cls, workdir: str, step: int | None = None, devices=None, mesh=None) -> BrainFeatures:
    """The run in ``workdir``: config, newest verified checkpoint (or ``step``), whitening.

    Raises FileNotFoundError (one clear line) when ``workdir`` is not a run or holds no
    checkpoint.
    """
    workdir = os.path.abspath(os.path.expanduser(workdir))
    if not os.path.isdir(workdir):
      raise FileNotFoundError(f"run directory {workdir} does not exist")
    config = run_dir.load_config(workdir)
    mesh = mesh if mesh is not None else make_mesh(config, devices)
    run = run_lib.load(workdir, step=step, mesh=mesh)
    data_cfg = config.get("data", ml_collections.ConfigDict())
    return cls(
      spec=run.spec,
      params=run.state.params,
      mesh=mesh,
      rules=shd.rules_from_config(config.get("rules")),
      whitening=extractor.run_whitening(workdir, config, run.spec.input_shape),
      normalize_eps=float(data_cfg.get("normalize_eps", 0.01)),
      config=config,
      step=run.step,
      workdir=workdir,
    )

  @property
  def param_shardings(self) -> tuple:
    return shd.named_shardings(self.mesh, brain.param_axes(self.spec), self.rules)

  def random_network(self, seed: int | None = None) -> BrainFeatures:
    """The same architecture and preprocessing with `brain.init` weights from ``seed`` (default:
    the run's seed + 1, never the seed it was trained from), initialized sharded."""
    if seed is None:
      seed = int(self.config.get("seed", 0)) + 1 if self.config is not None else 1
    init = jax.jit(lambda k: brain.init(k, self.spec), out_shardings=self.param_shardings)
    params = init(jax.random.key(int(seed)))
    return dataclasses.replace(self, params=params, step=0, name=f"random (seed {seed})")

  def with_readout(self, **kw) -> BrainFeatures:
    """This network read out another way: ``readout``, ``tap``, ``group``, ``input_scale``
    (a value of None keeps the current one)."""
    kw = {k: v for k, v in kw.items() if v is not None}
    out = dataclasses.replace(self, **kw)
    out.__dict__.pop("_jit_cache", None)
    out.check_readout()
    return out

  def check_readout(self) -> None:
    if self.readout not in extractor.READOUTS:
      raise ValueError(f"readout must be one of {extractor.READOUTS}, got {self.readout!r}")
    if self.tap not in TAPS:
      raise ValueError(f"tap must be one of {TAPS}, got {self.tap!r}")
    if int(self.group) < 1:
      raise ValueError(f"group must be >= 1, got {self.group}")
    if not 0.0 < float(self.input_scale) <= 1.0:
      raise ValueError(f"input_scale must be in (0, 1], got {self.input_scale}")

  # ---- geometry -------------------------------------------------------------------------------
  def layer_index(self, layer: int | str) -> int:
    """A layer name (``"layer2"``) or 0-based index -> 0-based index (negative counts back)."""
    names = [s.name for s in self.spec.layers]
    if isinstance(layer, str) and not layer.lstrip("-").isdigit():
      if layer not in names:
        raise ValueError(f"unknown layer {layer!r}; this network has {', '.join(names)}")
      return names.index(layer)
    i = int(layer)
    if not -len(names) <= i < len(names):
      raise ValueError(f"layer index {i} out of range for {len(names)} layers ({names})")
    return i % len(names)

  def feature_shape(self, layer: int | str, pool: int | None = None) -> tuple[int, int, int]:
    """``(h, w, k)`` of one example's features (their product is M)."""
    i = self.layer_index(layer)
    h, w, k = self.spec.output_shape(i)
    if self.tap == "encode":
      h, w = self.spec.geometries[i].grid
    if self.group > 1:
      if k % self.group:
        raise ValueError(f"group {self.group} does not divide the {k} features of layer {i + 1}")
      k //= self.group
    k = extractor.readout_channels(k, self.readout)
    if pool:
      h, w = len(pool_bins(h, pool)), len(pool_bins(w, pool))
    return h, w, k

  def preprocess(self, images) -> np.ndarray:
    """Training preprocessing of ``(N, H, W, C)`` images in [0, 1] (numpy, for display/tests)."""
    x = normalize_images(jnp.asarray(images, jnp.float32), self.normalize_eps)
    if self.whitening is not None:
      x = whiten_images(x, self.whitening.kernel)
    return np.asarray(x)

  # ---- feature functions ----------------------------------------------------------------------
  def feature_fn(
    self, layer: int | str, pool: int | None = None, pool_mode: str = "avg", preprocessed=False
  ) -> Callable:
    """Pure ``(params[: i + 1], images (B, H, W, C)) -> (B, M)``, constrained like training."""
    i = self.layer_index(layer)
    spec, eps = self.spec, self.normalize_eps
    kernel = None if self.whitening is None else self.whitening.kernel
    constrain = shd.constrainer(self.mesh, self.rules)
    if pool_mode not in POOL_MODES:
      raise ValueError(f"pool mode must be one of {POOL_MODES}, got {pool_mode!r}")
    self.check_readout()
    mode, tap, group, scale = self.readout, self.tap, int(self.group), float(self.input_scale)
    self.feature_shape(i)  # validates group

    def fn(params, images):
      x = images.astype(jnp.float32)
      if not preprocessed:
        x = shrink_images(x, scale)
        x = normalize_images(x, eps)
        if kernel is not None:
          x = whiten_images(x, kernel)
      x = constrain(brain.images_to_map(x), (None, None, "batch", None))
      for j in range(i):
        x = brain.layer_output(params[j], x, spec, j, constrain)
      if tap == "encode":
        x = brain.layer_encode(params[i], x, spec, i, constrain)
      else:
        x = brain.layer_output(params[i], x, spec, i, constrain)
      if group > 1:  # (h, w, B, K) -> (h, w, B, K / group)
        x = rica_layer.pool(x, group, 1e-8)
      x = extractor.readout(x, mode)
      x = pool_map(x, pool, pool_mode)  # (h, w, B, K)
      return jnp.transpose(x, (2, 0, 1, 3)).reshape(x.shape[2], -1)

    return fn

  def trainable(self, layer: int | str, pool: int | None = None, pool_mode: str = "avg"):
    """``(params, fn)`` for fine-tuning (`eval.finetune`): this network's ``params[: i + 1]`` and
        the pure, differentiable ``fn(params, images in [0, 1]) -> (B, M)`` of `feature_fn` (with
    the run's preprocessing). ``fn`` depends on the architecture and preprocessing only, so the
    random twin's params work with it."""
    i = self.layer_index(layer)
    return self.params[: i + 1], self.feature_fn(i, pool, pool_mode)

  def neuron_fn(self, layer: int | str, pool=None, pool_mode="avg", preprocessed=True):
    """``images -> (B, M)`` with this network's params bound (e.g. for `optimal_stimulus`)."""
    i = self.layer_index(layer)
    fn = self.feature_fn(i, pool, pool_mode, preprocessed)
    return functools.partial(fn, self.params[: i + 1])

  def _jitted(self, layer, pool, pool_mode, preprocessed):
    key = (self.layer_index(layer), pool, pool_mode, bool(preprocessed))
    key += (self.readout, self.tap, self.group, self.input_scale)
    cache = self.__dict__.setdefault("_jit_cache", {})
    if key not in cache:
      i = key[0]
      img_sh = NamedSharding(
        self.mesh, shd.logical_to_spec(("batch", None, None, None), self.rules)
      )
      out_sh = NamedSharding(self.mesh, shd.logical_to_spec(("batch", None), self.rules))
      fn = self.feature_fn(i, pool, pool_mode, preprocessed)
      cache[key] = (
        jax.jit(fn, in_shardings=(self.param_shardings[: i + 1], img_sh), out_shardings=out_sh),
        img_sh,
      )
    return cache[key]

  def stream(
    self,
    images,
    layer: int | str,
    pool: int | None = None,
    *,
    pool_mode: str = "avg",
    batch_size: int = 256,
    preprocessed: bool = False,
  ) -> Iterator[np.ndarray]:
    """Features ``(b, M)`` of consecutive batches of ``images`` (an array or an iterable of
    batches), as numpy, in order; the jitted function sees one padded batch shape."""
    i = self.layer_index(layer)
    fn, img_sh = self._jitted(i, pool, pool_mode, preprocessed)
    params = self.params[: i + 1]
    yield from extractor.stream_batches(
      lambda b: fn(params, jax.device_put(b, img_sh)),
      images,
      batch_size=batch_size,
      multiple=self.mesh.shape["data"],
      want_shape=self.spec.input_shape,
    )

  def features(self, images, layer: int | str, pool: int | None = None, **kw) -> np.ndarray:
    """All features ``(N, M)`` of ``images`` (see `stream` for the keyword arguments)."""
    return extractor.concat(self.stream(images, layer, pool, **kw))

  # ---- images from the run's own data pipeline ----------------------------------------------
  def pipeline_images(self, num: int, batch_size: int = 64, seed: int | None = None) -> np.ndarray:
    """``num`` preprocessed images from the run's training input pipeline (its source, crops,
    normalization and whitening; deterministic in ``seed``, default the run's seed)."""
    from livermore_brain import data as data_lib

    if self.config is None:
      raise ValueError("pipeline_images needs the run's config (use BrainFeatures.load)")
    h, _, c = self.spec.input_shape
    pipe = data_lib.make_pipeline(
      self.config.data,
      image_size=h,
      channels=c,
      global_batch=int(batch_size),
      seed=int(self.config.get("seed", 0) if seed is None else seed),
      workdir=self.workdir,
    )
    out, it = [], pipe.iterate(start_batch=0)
    try:
      while sum(b.shape[0] for b in out) < num:
        out.append(next(it)["image"])
    finally:
      it.close()
    return np.concatenate(out)[:num]

  def undo_whitening(self, images) -> np.ndarray:
    """Preprocessed images back to (normalized) pixels, for display only."""
    x = np.asarray(images, np.float32)
    return x if self.whitening is None else self.whitening.undo(x)


def load(workdir: str, step: int | None = None, devices=None, mesh=None) -> BrainFeatures:
  """`BrainFeatures.load`."""
  return BrainFeatures.load(workdir, step=step, devices=devices, mesh=mesh)


def run_features(
  workdir: str,
  images,
  layers: int | str | Sequence[int | str] = -1,
  pool: int | None = None,
  **kw,
) -> np.ndarray | dict:
  """One call: load the run in ``workdir`` and return ``layers``' features ``(N, M)`` for
  ``images`` (a dict ``{layer name: features}`` when several layers are asked for)."""
  bf = BrainFeatures.load(workdir)
  if isinstance(layers, (str, int)):
    return bf.features(images, layers, pool, **kw)
  return {
    bf.spec.layers[bf.layer_index(la)].name: bf.features(images, la, pool, **kw) for la in layers
  }
