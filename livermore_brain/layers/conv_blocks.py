"""Flax linen conv blocks: conv-BN-relu, the Inception module and its residual twin ResCeption.

ResCeption (Mundhenk et al. 2016, the LDRD report's supervised backbone) is an Inception module
(Szegedy et al. 2015: 1x1, 1x1->3x3, 1x1->5x5 and 3x3-max-pool->1x1 branches concatenated on
channels) wrapped in a ResNet shortcut (He et al. 2015)::

    y = relu(concat(b1, b3, b5, pool_proj) + shortcut(x))

with ``shortcut`` the identity when the module keeps the channel count and the grid, else a
strided 1x1 conv + BN projection. As in ResNet, the last conv of every branch has BN but no relu
before the sum. ``residual=False`` drops the shortcut and leaves ``relu(concat(...))`` — exactly
GoogLeNet's module (relu is elementwise, so it commutes with the concatenation). The Inception
twin is therefore the same code and the same parameter tree minus the shortcuts.

A module with ``strides=s > 1`` downsamples in every branch: the 1x1 branch, the 3x3 and 5x5
convs (their 1x1 reductions stay at stride 1, as ResNet v1.5 puts the stride on the 3x3), the
max-pool, and the projection shortcut. Padding is ``SAME`` everywhere, so a stride-s module maps
``H x W`` to ``ceil(H/s) x ceil(W/s)``.

Every parameter is boxed with logical axis names (`nn.with_logical_partitioning`), resolved to
mesh axes by the project's rules table (`livermore_brain.sharding`): conv kernels
``("conv_h", "conv_w", "conv_in", "conv_out")``, BN scale/bias ``("conv_out",)``, hidden dense
layers ``("embed", "mlp")`` / ``("mlp",)``, the classifier ``("embed", "classes")`` /
``("classes",)``. BatchNorm running statistics live unboxed in the ``batch_stats`` collection
(replicated).

BatchNorm and data parallelism: the step is one ``jax.jit`` over globally sharded arrays (GSPMD,
no ``shard_map``/``pmap``), so the batch mean and variance computed here are already reductions
over the *global* batch — XLA inserts the all-reduce over the ``data`` mesh axis. No
``axis_name`` is needed, and the statistics (hence the outputs) do not depend on the mesh.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

CONV_AXES = ("conv_h", "conv_w", "conv_in", "conv_out")
CHANNEL_AXES = ("conv_out",)
DENSE_AXES = ("embed", "mlp")
DENSE_BIAS_AXES = ("mlp",)
CLASSIFIER_AXES = ("embed", "classes")
CLASSIFIER_BIAS_AXES = ("classes",)

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # He et al. 2015
dense_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")  # followed by relu
classifier_init = nn.initializers.lecun_normal()


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
  return (int(v), int(v)) if isinstance(v, int) else tuple(int(a) for a in v)


def _max_pool_axis(x: jax.Array, axis: int, window: int, stride: int) -> jax.Array:
  n = x.shape[axis]
  n_out = -(-n // stride)
  total = max((n_out - 1) * stride + window - n, 0)  # SAME: the extra pad goes after
  pads = [(0, 0)] * x.ndim
  pads[axis] = (total // 2, total - total // 2)
  xp = jnp.pad(x, pads, constant_values=-jnp.inf)
  out = None
  for d in range(window):
    tap = jax.lax.slice_in_dim(xp, d, d + (n_out - 1) * stride + 1, stride, axis)
    out = tap if out is None else jnp.maximum(out, tap)
  return out


def max_pool(x: jax.Array, window: int = 3, stride: int = 1) -> jax.Array:
  """``window x window`` max-pool of (B, H, W, C), ``SAME`` padding with -inf, as shifted maxima.

  Same values as ``nn.max_pool(x, (window, window), (stride, stride), "SAME")``, computed as a
  separable maximum of strided slices: XLA:CPU runs ``reduce_window`` and its gradient
  (``select_and_scatter``) several times slower (128x16x16x56, 3x3/1, one run on 2 shared
  cores: forward 40 -> 7 ms, gradient 261 -> 72 ms). At ties the gradient is shared between the maxima
  (``jnp.maximum``) instead of going to one of them: also a valid subgradient.
  """
  return _max_pool_axis(_max_pool_axis(x, 1, window, stride), 2, window, stride)


def batch_norm(train: bool, dtype: Any = jnp.float32, name: str | None = None) -> nn.BatchNorm:
  """BatchNorm over (B, H, W) with logically named scale/bias; stats in ``batch_stats``.

  Under ``jax.jit`` with a batch sharded over the ``data`` mesh axis the mean/variance are global
  (GSPMD inserts the cross-device reduction), so no ``axis_name`` is passed.
  """
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=BN_MOMENTUM,
    epsilon=BN_EPSILON,
    dtype=dtype,
    scale_init=nn.with_logical_partitioning(nn.initializers.ones, CHANNEL_AXES),
    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, CHANNEL_AXES),
    name=name,
  )


def dense(features: int, axes=DENSE_AXES, bias_axes=DENSE_BIAS_AXES, init=dense_init, **kw):
  """`nn.Dense` with logically named kernel and bias."""
  return nn.Dense(
    features,
    kernel_init=nn.with_logical_partitioning(init, axes),
    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, bias_axes),
    **kw,
  )


class ConvBN(nn.Module):
  """``conv (no bias, SAME) -> BatchNorm -> relu`` (relu optional).

  Parameters: ``conv/kernel`` (kh, kw, cin, features) and ``bn/scale``, ``bn/bias`` (features,);
  ``batch_stats``: ``bn/mean``, ``bn/var``.
  """

  features: int
  kernel_size: int | tuple[int, int] = 3
  strides: int | tuple[int, int] = 1
  relu: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = nn.Conv(
      self.features,
      _pair(self.kernel_size),
      _pair(self.strides),
      padding="SAME",
      use_bias=False,
      dtype=self.dtype,
      kernel_init=nn.with_logical_partitioning(conv_init, CONV_AXES),
      name="conv",
    )(x)
    x = batch_norm(train, self.dtype, name="bn")(x)
    return nn.relu(x) if self.relu else x


@dataclasses.dataclass(frozen=True)
class InceptionWidths:
  """Channel widths of one Inception module (GoogLeNet Table 1 order)."""

  b1: int
  b3_reduce: int
  b3: int
  b5_reduce: int
  b5: int
  pool_proj: int

  def __post_init__(self):
    for f in dataclasses.fields(self):
      v = getattr(self, f.name)
      if not isinstance(v, int) or v <= 0:
        raise ValueError(f"InceptionWidths.{f.name} must be a positive int, got {v!r}")

  @property
  def out(self) -> int:
    """Output channels: b1 + b3 + b5 + pool_proj."""
    return self.b1 + self.b3 + self.b5 + self.pool_proj

  @classmethod
  def of(cls, w: InceptionWidths | Sequence[int] | Mapping[str, int]) -> InceptionWidths:
    """From an instance, a 6-sequence ``(b1, b3_reduce, b3, b5_reduce, b5, pool_proj)`` or a dict."""
    if isinstance(w, cls):
      return w
    names = [f.name for f in dataclasses.fields(cls)]
    if isinstance(w, Mapping):
      bad = sorted(set(w) - set(names))
      if bad or len(w) != len(names):
        raise ValueError(f"Inception widths {dict(w)!r}: need exactly the keys {names}")
      return cls(**{k: int(v) for k, v in w.items()})
    vals = tuple(w)
    if len(vals) != len(names):
      raise ValueError(f"Inception widths {vals!r}: need 6 ints ({', '.join(names)})")
    return cls(*(int(v) for v in vals))


class Inception(nn.Module):
  """Four branches concatenated on channels: 1x1 | 1x1->3x3 | 1x1->5x5 | maxpool 3x3->1x1.

  ``relu=False`` leaves the last conv of every branch without relu (for a residual sum after).
  Output: ``(B, ceil(H/s), ceil(W/s), widths.out)``.
  """

  widths: InceptionWidths
  strides: int = 1
  relu: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    w, s, r, dt = InceptionWidths.of(self.widths), self.strides, self.relu, self.dtype
    y1 = ConvBN(w.b1, 1, s, relu=r, dtype=dt, name="b1")(x, train)
    y3 = ConvBN(w.b3_reduce, 1, 1, dtype=dt, name="b3_reduce")(x, train)
    y3 = ConvBN(w.b3, 3, s, relu=r, dtype=dt, name="b3")(y3, train)
    y5 = ConvBN(w.b5_reduce, 1, 1, dtype=dt, name="b5_reduce")(x, train)
    y5 = ConvBN(w.b5, 5, s, relu=r, dtype=dt, name="b5")(y5, train)
    yp = max_pool(x, 3, s)
    yp = ConvBN(w.pool_proj, 1, 1, relu=r, dtype=dt, name="pool_proj")(yp, train)
    return jnp.concatenate([y1, y3, y5, yp], axis=-1)


class ResCeption(nn.Module):
  """``relu(Inception branches + shortcut)``; ``residual=False`` is the plain Inception module.

  Shortcut: identity when ``in_channels == widths.out`` and ``strides == 1``, else a 1x1 conv + BN
  projection with the stride (submodule ``shortcut``). Branches are submodule ``branches``.
  """

  widths: InceptionWidths
  strides: int = 1
  residual: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    w = InceptionWidths.of(self.widths)
    y = Inception(w, self.strides, relu=False, dtype=self.dtype, name="branches")(x, train)
    if self.residual:
      if x.shape[-1] == w.out and self.strides == 1:
        shortcut = x
      else:
        shortcut = ConvBN(w.out, 1, self.strides, relu=False, dtype=self.dtype, name="shortcut")(
          x, train
        )
      y = y + shortcut
    return nn.relu(y)
