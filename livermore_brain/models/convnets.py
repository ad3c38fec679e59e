"""Supervised conv networks of the LDRD report: ResCeption, its Inception twin, an AlexNet baseline.

Mundhenk et al. 2016 compare ResCeption against Inception (the same network without shortcuts)
and AlexNet; the three are built here by one function::

    model = build("resception", PRESETS["cpu"], num_classes=10)   # or "inception", "alexnet"
    variables = model.init(key, images, train=False)              # images: (B, H, W, C) float32
    logits, state = model.apply(variables, images, train=True, mutable=["batch_stats"],
                                rngs={"dropout": key})             # rngs only when dropout > 0
    _, inter = model.apply(variables, images, train=False, mutable=["intermediates"])
    inter["intermediates"]["block3"][0]                            # a named feature map

Every network sows its exported layers into the ``intermediates`` collection, in the order of
``model.feature_layers()`` (shapes for an input ``(B, H, W, C)``; ``ceil`` division throughout,
every conv and pool is ``SAME``):

* `ResCeptionNet` (both twins): ``stem`` (B, H/r, W/r, stem_features) with ``r = stem_stride``
  (x2 more with ``stem_pool``); ``block1..blockN`` (B, h, w, widths.out), one per module, the
  grid divided by each stage's stride at its first module; ``pool`` (B, C_last), the global
  average; ``logits`` (B, num_classes).
* `AlexNetStyle`: ``conv1..conv5`` (after relu, and after the 3x3/2 max-pool for conv 1, 2 and 5:
  (B, H/(2s), W/(2s), c1), then H/4s, H/4s, H/4s, H/8s with ``s = stride``); ``fc6``, ``fc7``
  (B, fc[i]); ``logits``.

Jit the init: compiling it takes ~20 s for the tiny nets on XLA:CPU (threefry sampling of every
kernel), and ``jax.eval_shape`` of it (`abstract_variables`) is what sharded init starts from.

A preset is a plain dict with a ``resception`` section (shared by the Inception twin) and an
``alexnet`` section, widths chosen so the AlexNet baseline costs about the ResCeption FLOPs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from livermore_brain.layers.conv_blocks import (
  CLASSIFIER_AXES,
  CLASSIFIER_BIAS_AXES,
  ConvBN,
  InceptionWidths,
  ResCeption,
  classifier_init,
  dense,
  max_pool,
)

ARCHS = ("resception", "inception", "alexnet")

Stage = tuple[int, tuple[InceptionWidths, ...]]  # (stride of the first module, module widths)


def _check_images(x: jax.Array) -> None:
  if x.ndim != 4:
    raise ValueError(f"expected images (B, H, W, C), got shape {tuple(x.shape)}")


def _classifier(num_classes: int, dtype: Any) -> nn.Dense:
  return dense(
    num_classes,
    CLASSIFIER_AXES,
    CLASSIFIER_BIAS_AXES,
    classifier_init,
    dtype=dtype,
    name="classifier",
  )


class ResCeptionNet(nn.Module):
  """Stem conv (+ optional 3x3/2 max-pool), stages of ResCeption modules, GAP, dropout, classifier.

  ``residual=False`` gives the Inception twin (same parameters minus the shortcut projections).
  """

  num_classes: int
  stages: tuple[Stage, ...]
  stem_features: int = 64
  stem_kernel: int = 7
  stem_stride: int = 2
  stem_pool: bool = True
  dropout: float = 0.0
  residual: bool = True
  # False: ``pool`` flattens the last map instead of averaging it (keeps where things are in the
  # input; the towers of context prediction on small patches).
  global_pool: bool = True
  dtype: Any = jnp.float32

  def feature_layers(self) -> tuple[str, ...]:
    n = sum(len(modules) for _, modules in self.stages)
    return ("stem", *(f"block{i + 1}" for i in range(n)), "pool", "logits")

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    _check_images(x)
    x = ConvBN(
      self.stem_features, self.stem_kernel, self.stem_stride, dtype=self.dtype, name="stem_conv"
    )(x.astype(self.dtype), train)
    if self.stem_pool:
      x = max_pool(x, 3, 2)
    self.sow("intermediates", "stem", x)
    i = 0
    for stride, modules in self.stages:
      for j, widths in enumerate(modules):
        i += 1
        s = stride if j == 0 else 1
        x = ResCeption(widths, s, self.residual, dtype=self.dtype, name=f"module{i}")(x, train)
        self.sow("intermediates", f"block{i}", x)
    x = jnp.mean(x, axis=(1, 2)) if self.global_pool else x.reshape(x.shape[0], -1)
    self.sow("intermediates", "pool", x)
    if self.dropout > 0:
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = _classifier(self.num_classes, self.dtype)(x).astype(jnp.float32)
    self.sow("intermediates", "logits", x)
    return x


class AlexNetStyle(nn.Module):
  """5 conv-BN-relu (3x3/2 max-pool after conv 1, 2, 5), flatten, 2 FC-relu-dropout, classifier."""

  FEATURE_LAYERS: ClassVar[tuple[str, ...]] = (
    *(f"conv{i}" for i in range(1, 6)),
    "fc6",
    "fc7",
    "logits",
  )
  POOL_AFTER: ClassVar[tuple[int, ...]] = (1, 2, 5)

  num_classes: int
  features: tuple[int, ...] = (96, 256, 384, 384, 256)
  kernels: tuple[int, ...] = (11, 5, 3, 3, 3)
  stride: int = 4  # of conv1
  fc: tuple[int, ...] = (4096, 4096)
  dropout: float = 0.5
  dtype: Any = jnp.float32

  def feature_layers(self) -> tuple[str, ...]:
    return self.FEATURE_LAYERS

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    _check_images(x)
    x = x.astype(self.dtype)
    for i, (c, k) in enumerate(zip(self.features, self.kernels), start=1):
      s = self.stride if i == 1 else 1
      x = ConvBN(c, k, s, dtype=self.dtype, name=f"conv_bn{i}")(x, train)
      if i in self.POOL_AFTER:
        x = max_pool(x, 3, 2)
      self.sow("intermediates", f"conv{i}", x)
    x = x.reshape(x.shape[0], -1)
    for i, f in enumerate(self.fc, start=6):
      x = nn.relu(dense(f, dtype=self.dtype, name=f"dense{i}")(x))
      self.sow("intermediates", f"fc{i}", x)
      if self.dropout > 0:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = _classifier(self.num_classes, self.dtype)(x).astype(jnp.float32)
    self.sow("intermediates", "logits", x)
    return x


def _stages(n_modules: Sequence[int], strides: Sequence[int], widths: Sequence[Sequence[int]]):
  """Preset helper: stage i = ``n_modules[i]`` modules of ``widths[i]``, first one strided."""
  return [{"stride": s, "modules": [list(w)] * n} for n, s, w in zip(n_modules, strides, widths)]


PRESETS: dict[str, dict[str, Any]] = {
  # 16x16 inputs (tests); a few thousand parameters, hand-counted in tests/test_conv_blocks.py.
  "tiny": {
    "resception": {
      "stem_features": 8,
      "stem_kernel": 3,
      "stem_stride": 1,
      "stem_pool": False,
      "stages": [
        {"stride": 1, "modules": [[4, 4, 4, 2, 4, 4]]},  # 8 -> 16 channels: projection
        {"stride": 2, "modules": [[8, 4, 8, 2, 4, 4], [8, 4, 8, 2, 4, 4]]},  # 16 -> 24 -> 24
      ],
      "dropout": 0.0,
    },
    "alexnet": {
      "features": [16, 16, 8, 8, 8],
      "kernels": [3, 3, 3, 3, 3],
      "stride": 1,
      "fc": [16, 16],
      "dropout": 0.0,
    },
  },
  # 32x32 grayscale digits; ~1,000 steps of batch 128 in about two minutes on 2 CPU cores.
  "cpu": {
    "resception": {
      "stem_features": 24,
      "stem_kernel": 3,
      "stem_stride": 2,
      "stem_pool": True,  # 32 -> 8: modules at 16x16 cost ~3x the step (XLA:CPU elementwise)
      "stages": _stages(
        [1, 2, 2],
        [1, 2, 2],  # 8, 4, 2
        [[16, 16, 24, 4, 8, 8], [32, 32, 48, 8, 16, 16], [48, 48, 64, 12, 24, 24]],
      ),
      "dropout": 0.0,
    },
    "alexnet": {
      "features": [32, 48, 64, 64, 48],
      "kernels": [5, 3, 3, 3, 3],
      "stride": 2,  # 32 -> 16 -> 8 -> 4 -> 2
      "fc": [128, 128],
      "dropout": 0.25,
    },
  },
  # 224x224 RGB, the report's scale: GoogLeNet widths (3a-5b) in three stride-2 stages.
  "imagenet": {
    "resception": {
      "stem_features": 64,
      "stem_kernel": 7,
      "stem_stride": 2,
      "stem_pool": True,  # 224 -> 56
      "stages": [
        {"stride": 2, "modules": [[64, 96, 128, 16, 32, 32], [128, 128, 192, 32, 96, 64]]},
        {
          "stride": 2,
          "modules": [
            [192, 96, 208, 16, 48, 64],
            [160, 112, 224, 24, 64, 64],
            [128, 128, 256, 24, 64, 64],
            [112, 144, 288, 32, 64, 64],
            [256, 160, 320, 32, 128, 128],
          ],
        },
        {"stride": 2, "modules": [[256, 160, 320, 32, 128, 128], [384, 192, 384, 48, 128, 128]]},
      ],
      "dropout": 0.4,
    },
    "alexnet": {
      "features": [96, 256, 384, 384, 256],
      "kernels": [11, 5, 3, 3, 3],
      "stride": 4,
      "fc": [4096, 4096],
      "dropout": 0.5,
    },
  },
}

_RESCEPTION_KEYS = (
  "stem_features",
  "stem_kernel",
  "stem_stride",
  "stem_pool",
  "stages",
  "dropout",
  "dtype",
)
_ALEXNET_KEYS = ("features", "kernels", "stride", "fc", "dropout", "dtype")


def _plain(cfg: Any) -> Any:
  """ConfigDict / nested mappings -> plain dicts (lists kept)."""
  if hasattr(cfg, "to_dict"):
    cfg = cfg.to_dict()
  if isinstance(cfg, Mapping):
    return {k: _plain(v) for k, v in cfg.items()}
  if isinstance(cfg, (list, tuple)):
    return [_plain(v) for v in cfg]
  return cfg


def _parse_stages(stages: Any) -> tuple[Stage, ...]:
  out = []
  for k, st in enumerate(stages or ()):
    if isinstance(st, Mapping):
      if set(st) != {"stride", "modules"}:
        raise ValueError(f"stage {k} {st!r}: need exactly the keys 'stride' and 'modules'")
      stride, modules = st["stride"], st["modules"]
    else:
      stride, modules = st
    if int(stride) < 1 or not modules:
      raise ValueError(f"stage {k}: stride must be >= 1 and modules non-empty, got {st!r}")
    out.append((int(stride), tuple(InceptionWidths.of(w) for w in modules)))
  if not out:
    raise ValueError("a ResCeption config needs at least one stage in 'stages'")
  return tuple(out)


def build(arch: str, cfg: Any, num_classes: int) -> nn.Module:
  """``arch`` in `ARCHS`; ``cfg`` a preset name, a preset dict, or one section of a preset.

  A preset holds a ``resception`` section (used by ``resception`` and ``inception``) and an
  ``alexnet`` section; a section alone is accepted too. ``ml_collections.ConfigDict`` works.
  """
  if arch not in ARCHS:
    raise ValueError(f"unknown arch {arch!r}; valid archs: {', '.join(ARCHS)}")
  if isinstance(cfg, str):
    if cfg not in PRESETS:
      raise ValueError(f"unknown preset {cfg!r}; valid presets: {', '.join(PRESETS)}")
    cfg = PRESETS[cfg]
  if int(num_classes) < 1:
    raise ValueError(f"num_classes must be >= 1, got {num_classes}")
  cfg = _plain(cfg)
  section = "alexnet" if arch == "alexnet" else "resception"
  if "resception" in cfg or "alexnet" in cfg:
    if section not in cfg:
      raise ValueError(f"arch {arch!r} needs a {section!r} section in the model config")
    cfg = cfg[section]
  valid = _ALEXNET_KEYS if arch == "alexnet" else _RESCEPTION_KEYS
  bad = sorted(set(cfg) - set(valid))
  if bad:
    raise ValueError(f"{arch} config: unknown key(s) {bad}; valid keys: {', '.join(valid)}")
  kw = dict(cfg)
  if "dtype" in kw:
    kw["dtype"] = jnp.dtype(kw["dtype"])
  if arch == "alexnet":
    for key in ("features", "kernels", "fc"):
      if key in kw:
        kw[key] = tuple(int(v) for v in kw[key])
    if len(kw.get("features", (0,) * 5)) != 5 or len(kw.get("kernels", (0,) * 5)) != 5:
      raise ValueError("alexnet config: 'features' and 'kernels' need 5 entries each")
    return AlexNetStyle(num_classes=int(num_classes), **kw)
  kw["stages"] = _parse_stages(kw.get("stages"))
  return ResCeptionNet(num_classes=int(num_classes), residual=arch == "resception", **kw)


def feature_layers(arch: str, cfg: Any) -> tuple[str, ...]:
  """Names of the sown feature maps of ``build(arch, cfg, ...)``, input to output."""
  return build(arch, cfg, 1).feature_layers()


def abstract_variables(module: nn.Module, input_shape: Sequence[int]) -> Any:
  """``jax.eval_shape`` of ``module.init`` (boxed, with logical axes); allocates nothing."""
  x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
  return jax.eval_shape(lambda k, x: module.init(k, x, train=False), jax.random.key(0), x)


def param_count(module: nn.Module, input_shape: Sequence[int]) -> int:
  """Number of trainable parameters (the ``params`` collection), from shapes only."""
  params = abstract_variables(module, input_shape)["params"]
  return int(sum(np.prod(leaf.shape, dtype=np.int64) for leaf in jax.tree.leaves(params)))


def feature_shapes(module: nn.Module, input_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
  """``{name: shape}`` of the sown intermediates (inference mode), from shapes only."""
  variables = nn.unbox(abstract_variables(module, input_shape))
  x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
  _, state = jax.eval_shape(
    lambda v, x: module.apply(v, x, train=False, mutable=["intermediates"]), variables, x
  )
  inter = state["intermediates"]
  return {name: tuple(inter[name][0].shape) for name in module.feature_layers()}


def flops(module: nn.Module, input_shape: Sequence[int]) -> float:
  """XLA's FLOP count of one inference forward pass on a batch of ``input_shape``.

  From ``jax.jit(apply).lower(...).compile().cost_analysis()`` on abstract inputs (nothing is
  allocated or run). XLA counts 2 FLOPs per multiply-add and skips SAME-padding taps; divide by
  ``input_shape[0]`` for FLOPs per image.
  """
  variables = nn.unbox(abstract_variables(module, input_shape))
  x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
  fn = jax.jit(lambda v, x: module.apply(v, x, train=False))
  cost = fn.lower(variables, x).compile().cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
    cost = cost[0]
  return float(cost["flops"])
