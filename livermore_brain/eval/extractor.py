"""Features from any run: the interface every family's feature extractor offers, and the
batching they share.

`livermore_brain.families.load_features(workdir)` returns, for any run directory, an object
with this interface (RICA: `rica.features.BrainFeatures`; every flax family: a subclass of
`eval.flax_features.FlaxFeatures`)::

    fx.family, fx.name          # "rica", "trained" | "random (seed 1)"
    fx.input_shape              # (H, W, C) the network takes; images are float32 in [0, 1]
    fx.layers                   # the exported layer names, input to output
    fx.features(images, layer, pool=None, batch_size=256) -> (N, M) numpy
    fx.random_network(seed=None)   # the random-initialization twin: same architecture and
                                   # preprocessing, fresh weights (never the training seed)
    fx.feature_shape(layer, pool=None) -> (h, w, k)   # one example's map (M = h * w * k)
    fx.trainable(layer, pool=None) -> (params, fn)    # fine-tuning (`eval.finetune`): a pure,
                                   # differentiable fn(params, images) -> (B, M), preprocessing
                                   # included (convnets: batch norm frozen, inference mode);
                                   # fn does not depend on the weights: the twin's params fit it

Every extractor applies its run's own preprocessing, so callers pass plain images in [0, 1].
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from livermore_brain import sharding as shd

POOL_MODES = ("avg", "max", "l2")
# How a layer's signed map is read out before pooling: as is; |x|; x+ and x- as two channels
# (the polarity split of Coates & Ng 2011); max(x, 0).
READOUTS = ("raw", "abs", "split", "relu")


class FeatureExtractor(Protocol):
  family: str
  name: str

  @property
  def input_shape(self) -> tuple[int, int, int]: ...

  @property
  def layers(self) -> tuple[str, ...]: ...

  def features(self, images, layer, pool: int | None = None, **kw) -> np.ndarray: ...

  def random_network(self, seed: int | None = None) -> FeatureExtractor: ...

  def feature_shape(self, layer, pool: int | None = None) -> tuple[int, int, int]: ...

  def trainable(self, layer, pool: int | None = None, pool_mode: str = "avg") -> tuple: ...


def stream_batches(
  run: Callable[[np.ndarray], object],
  images,
  *,
  batch_size: int,
  multiple: int,
  want_shape: Sequence[int],
) -> Iterator[np.ndarray]:
  """``run(batch)`` over consecutive fixed-size batches of ``images`` (an array or an iterable
  of batches), yielded as numpy in order.

  Every call sees one batch shape — a multiple of ``multiple`` (the mesh's ``data`` axis),
  the last batch padded by repeating its last image and the padding cut from the output — so
  the jitted function compiles once.
  """
  bs = max(1, int(batch_size))
  if isinstance(images, np.ndarray) or hasattr(images, "__array__"):
    x = np.asarray(images)
    bs = -(-min(bs, max(x.shape[0], 1)) // multiple) * multiple
    batches = (x[lo : lo + bs] for lo in range(0, x.shape[0], bs))
  else:
    bs = -(-bs // multiple) * multiple
    batches = (np.asarray(b) for b in images)
  want = tuple(int(v) for v in want_shape)
  for batch in batches:
    if batch.ndim != 1 + len(want) or tuple(batch.shape[1:]) != want:  # images or clips
      raise ValueError(f"images must be (N, {', '.join(map(str, want))}), got {batch.shape}")
    for lo in range(0, batch.shape[0], bs):  # an iterable may yield larger batches: split them
      part = batch[lo : lo + bs]
      m = part.shape[0]
      if m < bs:
        part = np.concatenate([part, np.repeat(part[-1:], bs - m, axis=0)])
      out = run(part.astype(np.float32, copy=False))
      # Wait for every shard, replicas included, before the next batch is dispatched: fetching
      # one replica per shard could start the next program while other devices still run this
      # one, which can starve XLA:CPU's thread pool of the participants of a collective.
      out.block_until_ready()
      yield np.asarray(out)[:m]


def concat(outs: Iterator[np.ndarray]) -> np.ndarray:
  outs = list(outs)
  if not outs:
    raise ValueError("features needs at least one image")
  return np.concatenate(outs)


# ---- shared by the families' extractors ------------------------------------------------------
def make_mesh(config: ml_collections.ConfigDict, devices=None) -> Mesh:
  """The run's training mesh when it fits ``devices``; else every device on ``model``."""
  try:
    return shd.make_mesh(config.get("mesh", ""), devices)
  except ValueError:
    return shd.make_mesh("data:1,model:-1", devices)


def pool_bins(n: int, g: int) -> list[tuple[int, int]]:
  """Adaptive pooling bins: ``g`` half-open ranges covering ``0..n`` (overlapping by at most one
  when ``g`` does not divide ``n``); ``g >= n`` gives one bin per position."""
  g = min(int(g), n)
  return [(math.floor(i * n / g), math.ceil((i + 1) * n / g)) for i in range(g)]


def normalize_images(x: jax.Array, eps: float) -> jax.Array:
  """Per-image normalization of ``(B, H, W, C)`` in [0, 1], as the training pipeline does it."""
  x = x - jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  return x / (jnp.std(x, axis=(1, 2, 3), keepdims=True) + eps)


def whiten_images(x: jax.Array, kernel: np.ndarray) -> jax.Array:
  """`Whitening.apply` in JAX: symmetric padding by ``p // 2``, then the ``(p, p, C, C)`` filter."""
  r = kernel.shape[0] // 2
  xp = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="symmetric")
  return jax.lax.conv_general_dilated(
    xp, jnp.asarray(kernel, x.dtype), (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )


def readout(x: jax.Array, mode: str = "raw") -> jax.Array:
  """A signed map ``(..., K)`` read out per value (`READOUTS`); ``split`` gives ``(..., 2K)``:
  ``[max(x, 0), max(-x, 0)]``. Averaging a signed map over space cancels opposite responses of
  one filter (a dark and a light stroke); the rectified readouts keep both."""
  if mode == "raw":
    return x
  if mode == "abs":
    return jnp.abs(x)
  if mode == "relu":
    return jnp.maximum(x, 0.0)
  if mode == "split":
    return jnp.concatenate([jnp.maximum(x, 0.0), jnp.maximum(-x, 0.0)], axis=-1)
  raise ValueError(f"readout must be one of {READOUTS}, got {mode!r}")


def readout_channels(k: int, mode: str) -> int:
  return 2 * k if mode == "split" else k


def pool_images(x: jax.Array, pool: int | None, mode: str = "avg") -> jax.Array:
  """Pool a batch-major map ``(B, H, W, K)`` to ``(B, g, g, K)`` with adaptive bins
  (`pool_bins`): mean, max or L2 (root mean square, Le et al. 2012's pooling); ``pool``
  None/0: as is. Vectors ``(B, K)`` pass through."""
  if not pool or x.ndim != 4:
    return x
  if mode not in POOL_MODES:
    raise ValueError(f"pool mode must be one of {POOL_MODES}, got {mode!r}")
  if int(pool) < 0:
    raise ValueError(f"pool must be a positive grid size (or 0 for none), got {pool}")
  if mode == "l2":
    red = lambda v, axis: jnp.sqrt(jnp.mean(jnp.square(v), axis=axis) + 1e-8)
  else:
    red = jnp.mean if mode == "avg" else jnp.max
  rows = [
    jnp.stack([red(x[:, y0:y1, x0:x1], axis=(1, 2)) for x0, x1 in pool_bins(x.shape[2], pool)], 1)
    for y0, y1 in pool_bins(x.shape[1], pool)
  ]
  return jnp.stack(rows, 1)


def run_whitening(workdir: str, config, input_shape):
  """The run's ZCA whitening (``<workdir>/whitening.npz``, or refit exactly as the run did, it
  is deterministic); None when the run's data config does not whiten."""

  from livermore_brain.data import whitening as whitening_lib

  data_cfg = config.get("data")
  if data_cfg is None or not data_cfg.get("whiten", True):
    return None
  path = os.path.join(workdir, "whitening.npz")
  if os.path.exists(path):
    return whitening_lib.Whitening.load(path)
  from livermore_brain import data as data_lib
  from livermore_brain.data.spec import InputSpec

  pipe = data_lib.make_pipeline(
    data_cfg, InputSpec(tuple(input_shape)), global_batch=1, seed=int(config.get("seed", 0))
  )
  return pipe.whitening
