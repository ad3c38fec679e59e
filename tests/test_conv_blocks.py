"""Golden tests of the conv blocks (ConvBN, Inception, ResCeption) and the three conv networks.

The reference is float64 numpy with explicit loops: SAME convolution as a sum over kernel
offsets, BatchNorm as its inference affine map, 3x3 max-pool over -inf padding.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from livermore_brain.layers import conv_blocks as cb
from livermore_brain.models import convnets as cn

EPS = cb.BN_EPSILON


def _init(module, shape, seed=0, random_bn=False):
  """``module.init``'s variable tree (float32), filled from numpy.

  Kernels ~ N(0, 1/fan_in); BN scale 1, bias 0, running mean 0, var 1 unless ``random_bn``
  (then scale, var in [0.5, 1.5], bias, mean ~ 0.3 N(0, 1)). Only ``jax.eval_shape`` of the init
  runs: compiling it takes ~25 s on XLA:CPU (threefry sampling), an eager init longer.
  """
  abstract = jax.eval_shape(
    lambda x: module.init(jax.random.key(0), x, train=False),
    jax.ShapeDtypeStruct(tuple(shape), jnp.float32),
  )
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if name.endswith("['kernel']"):
      return rng.standard_normal(leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
    if name.endswith("['scale']") or name.endswith("['var']"):
      return rng.uniform(0.5, 1.5, leaf.shape) if random_bn else np.ones(leaf.shape)
    return 0.3 * rng.standard_normal(leaf.shape) if random_bn else np.zeros(leaf.shape)

  return jax.tree_util.tree_map_with_path(fill, nn.unbox(abstract))


def _f32(tree):
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), tree)


def _apply(module, variables, x, train=False, mutable=False):
  fn = jax.jit(lambda v, x: module.apply(v, x, train=train, mutable=mutable))
  return fn(variables, x)


# ----------------------------------------------------------------------------- numpy reference


def _same_pads(n: int, k: int, s: int) -> tuple[int, int, int]:
  n_out = -(-n // s)
  total = max((n_out - 1) * s + k - n, 0)
  return n_out, total // 2, total - total // 2


def np_conv(x, w, stride):
  """SAME conv, (B, H, W, Ci) x (kh, kw, Ci, Co), as a loop over the kernel offsets."""
  kh, kw = w.shape[:2]
  ho, t, b = _same_pads(x.shape[1], kh, stride)
  wo, lft, r = _same_pads(x.shape[2], kw, stride)
  xp = np.pad(x, ((0, 0), (t, b), (lft, r), (0, 0)))
  out = np.zeros((x.shape[0], ho, wo, w.shape[3]))
  for i in range(kh):
    for j in range(kw):
      tap = xp[:, i : i + (ho - 1) * stride + 1 : stride, j : j + (wo - 1) * stride + 1 : stride]
      out += np.einsum("bhwc,cd->bhwd", tap, w[i, j])
  return out


def np_max_pool(x, stride, k=3):
  ho, t, b = _same_pads(x.shape[1], k, stride)
  wo, lft, r = _same_pads(x.shape[2], k, stride)
  xp = np.pad(x, ((0, 0), (t, b), (lft, r), (0, 0)), constant_values=-np.inf)
  out = np.full((x.shape[0], ho, wo, x.shape[3]), -np.inf)
  for i in range(k):
    for j in range(k):
      out = np.maximum(
        out, xp[:, i : i + (ho - 1) * stride + 1 : stride, j : j + (wo - 1) * stride + 1 : stride]
      )
  return out


def np_conv_bn(x, p, st, stride, relu):
  y = np_conv(x, p["conv"]["kernel"], stride)
  y = (y - st["bn"]["mean"]) / np.sqrt(st["bn"]["var"] + EPS) * p["bn"]["scale"] + p["bn"]["bias"]
  return np.maximum(y, 0) if relu else y


def np_resception(x, p, st, stride, residual):
  b, s = p["branches"], st["branches"]
  y1 = np_conv_bn(x, b["b1"], s["b1"], stride, False)
  y3 = np_conv_bn(x, b["b3_reduce"], s["b3_reduce"], 1, True)
  y3 = np_conv_bn(y3, b["b3"], s["b3"], stride, False)
  y5 = np_conv_bn(x, b["b5_reduce"], s["b5_reduce"], 1, True)
  y5 = np_conv_bn(y5, b["b5"], s["b5"], stride, False)
  yp = np_conv_bn(np_max_pool(x, stride), b["pool_proj"], s["pool_proj"], 1, False)
  y = np.concatenate([y1, y3, y5, yp], axis=-1)
  if residual:
    y = y + (np_conv_bn(x, p["shortcut"], st["shortcut"], stride, False) if "shortcut" in p else x)
  return np.maximum(y, 0)


# ------------------------------------------------------------------------- (2) golden values


W_SMALL = cb.InceptionWidths(4, 4, 4, 2, 4, 4)  # out = 4 + 4 + 4 + 4 = 16


@pytest.mark.parametrize(
  "cin, stride, residual, hw",
  [
    (6, 2, True, (9, 7)),  # projection shortcut, strided, odd non-square grid
    (16, 1, True, (6, 5)),  # identity shortcut
    (6, 1, False, (5, 6)),  # the Inception twin: no shortcut at all
  ],
)
def test_resception_block_matches_numpy(cin, stride, residual, hw):
  block = cb.ResCeption(W_SMALL, stride, residual)
  x = np.random.default_rng(1).standard_normal((2, *hw, cin))
  variables = _init(block, (1, *hw, cin), seed=2, random_bn=True)  # float64
  assert ("shortcut" in variables["params"]) == (residual and (cin != 16 or stride != 1))
  got = _apply(block, _f32(variables), jnp.asarray(x, jnp.float32))
  want = np_resception(x, variables["params"], variables["batch_stats"], stride, residual)
  assert got.shape == want.shape == (2, -(-hw[0] // stride), -(-hw[1] // stride), 16)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
  assert (want == 0).mean() > 0.1  # the relus are exercised


@pytest.mark.parametrize("stride", [1, 2])
def test_max_pool_matches_reference_and_flax(stride):
  x = np.random.default_rng(0).standard_normal((2, 7, 8, 3))
  got = cb.max_pool(jnp.asarray(x, jnp.float32), 3, stride)
  flax_pool = nn.max_pool(jnp.asarray(x, jnp.float32), (3, 3), (stride, stride), "SAME")
  np.testing.assert_array_equal(np.asarray(got), np.asarray(flax_pool))
  np.testing.assert_allclose(np.asarray(got), np_max_pool(x, stride), rtol=1e-6)


# ----------------------------------------------------------------- (1) shapes, parameter counts


def _count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _shapes(module, x):
  """(variables, output) shapes from jax.eval_shape: nothing compiled or run."""
  v = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), x)
  return v, jax.eval_shape(lambda v, x: module.apply(v, x, train=False), v, x).shape


def test_block_shapes_and_parameter_counts():
  x8 = jax.ShapeDtypeStruct((2, 16, 12, 8), jnp.float32)
  # Inception, 8 -> 16 channels; every conv has no bias, its BN adds scale + bias (2 x out):
  #   b1 1x1 8->4: 32 + 8 = 40        b3_reduce 1x1 8->4: 32 + 8 = 40
  #   b3 3x3 4->4: 144 + 8 = 152      b5_reduce 1x1 8->2: 16 + 4 = 20
  #   b5 5x5 2->4: 200 + 8 = 208      pool_proj 1x1 8->4: 32 + 8 = 40      total 500
  v, shape = _shapes(cb.Inception(W_SMALL), x8)
  assert shape == (2, 16, 12, 16)
  assert _count(v["params"]) == 500
  # ResCeption adds the projection 1x1 8->16: 128 + 32 = 160  -> 660
  res = cb.ResCeption(W_SMALL, strides=2)
  v, shape = _shapes(res, x8)
  assert shape == (2, 8, 6, 16)
  assert _count(v["params"]) == 660
  assert _count(v["batch_stats"]) == 2 * (4 + 4 + 4 + 2 + 4 + 4 + 16)  # mean + var per BN channel
  # identity case, 16 -> 16: b1 64+8, b3_reduce 64+8, b3 152, b5_reduce 32+4, b5 208,
  #   pool_proj 64+8  = 72 + 72 + 152 + 36 + 208 + 72 = 612, no shortcut parameters
  v, shape = _shapes(res.clone(strides=1), jax.ShapeDtypeStruct((2, 5, 7, 16), jnp.float32))
  assert shape == (2, 5, 7, 16)
  assert _count(v["params"]) == 612 and "shortcut" not in v["params"]
  with pytest.raises(ValueError, match="6 ints"):
    cb.InceptionWidths.of((1, 2, 3))


# tiny preset, 3 input channels, 10 classes:
#   stem 3x3 3->8: 216 + 16 = 232
#   block1 (4,4,4,2,4,4) 8->16, stride 1: 500 + projection 160 = 660
#   block2 (8,4,8,2,4,4) 16->24, stride 2: b1 16*8+16 = 144, b3_reduce 16*4+8 = 72,
#     b3 9*4*8+16 = 304, b5_reduce 16*2+4 = 36, b5 25*2*4+8 = 208, pool_proj 16*4+8 = 72
#     = 836, + projection 16*24 + 48 = 432  -> 1268
#   block3 (8,4,8,2,4,4) 24->24: b1 24*8+16 = 208, b3_reduce 24*4+8 = 104, b3 304,
#     b5_reduce 24*2+4 = 52, b5 208, pool_proj 24*4+8 = 104  = 980, identity shortcut
#   classifier 24*10 + 10 = 250
#   ResCeption = 232 + 660 + 1268 + 980 + 250 = 3390; Inception = 3390 - 160 - 432 = 2798
# AlexNet tiny (16,16,8,8,8), 3x3 kernels, stride 1, fc (16,16), pools after conv 1, 2, 5:
#   conv1 27*16+32 = 464, conv2 144*16+32 = 2336, conv3 144*8+16 = 1168, conv4 72*8+16 = 592,
#   conv5 592; 16x16 -> 8 -> 4 -> 2: flatten 2*2*8 = 32; fc6 32*16+16 = 528,
#   fc7 16*16+16 = 272, classifier 16*10+10 = 170   -> 6122
TINY_PARAMS = {"resception": 3390, "inception": 2798, "alexnet": 6122}


@pytest.fixture(scope="module")
def tiny():
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 16, 12, 3)), jnp.float32)
  out = {}
  for arch in cn.ARCHS:
    model = cn.build(arch, "tiny", 10)
    out[arch] = (model, _f32(_init(model, x.shape)))
  return x, out


@pytest.mark.parametrize("arch", cn.ARCHS)
def test_tiny_parameter_counts(arch, tiny):
  model, variables = tiny[1][arch]
  assert _count(variables["params"]) == TINY_PARAMS[arch]
  assert cn.param_count(model, (1, 16, 16, 3)) == TINY_PARAMS[arch]
  assert cn.param_count(model, (4, 16, 12, 3)) == TINY_PARAMS[arch]


def test_configdict_and_section_give_the_same_model():
  cfg = ml_collections.ConfigDict(cn.PRESETS["tiny"])
  assert cn.param_count(cn.build("inception", cfg, 10), (1, 16, 16, 3)) == 2798
  section = cn.PRESETS["tiny"]["alexnet"]
  assert cn.build("alexnet", section, 10) == cn.build("alexnet", "tiny", 10)


def test_flops_scale_with_batch():
  model = cn.build("resception", "tiny", 10)
  f1 = cn.flops(model, (1, 16, 16, 3))
  # the convs alone are > 2 * (stem 16*16*27*8 + block1's 1x1s 16*16*8*16) multiply-adds
  assert f1 > 2 * (16 * 16 * 27 * 8 + 16 * 16 * 8 * 16)
  # a count for the whole batch (XLA lowers batch 1 a little differently: within 10%)
  assert cn.flops(model, (4, 16, 16, 3)) == pytest.approx(4 * f1, rel=0.1)


# ------------------------------------------------------------------ (3) logical axis metadata


def _expected_axes(keys: list[str]) -> tuple[str, ...]:
  leaf, owner = keys[-1], keys[-2]
  if owner == "classifier":
    return cb.CLASSIFIER_AXES if leaf == "kernel" else cb.CLASSIFIER_BIAS_AXES
  if owner.startswith("dense"):
    return cb.DENSE_AXES if leaf == "kernel" else cb.DENSE_BIAS_AXES
  if owner == "conv":
    assert leaf == "kernel"
    return cb.CONV_AXES
  assert owner == "bn" and leaf in ("scale", "bias")
  return cb.CHANNEL_AXES


@pytest.mark.parametrize("arch", cn.ARCHS)
def test_every_param_has_logical_axes(arch):
  model = cn.build(arch, "tiny", 10)
  abstract = cn.abstract_variables(model, (2, 16, 16, 3))
  boxes = jax.tree.leaves(abstract["params"], is_leaf=lambda x: isinstance(x, nn.Partitioned))
  assert boxes and all(isinstance(b, nn.LogicallyPartitioned) for b in boxes)
  specs = nn.get_partition_spec(abstract["params"])
  flat = jax.tree_util.tree_flatten_with_path(nn.unbox(abstract["params"]))[0]
  seen = set()
  for path, leaf in flat:
    keys = [p.key for p in path]
    spec = specs
    for k in keys:
      spec = spec[k]
    assert isinstance(spec, jax.sharding.PartitionSpec)
    assert len(spec) == leaf.ndim, keys
    assert tuple(spec) == _expected_axes(keys), keys
    seen.add(tuple(spec))
  assert cb.CLASSIFIER_AXES in seen and cb.CHANNEL_AXES in seen and cb.CONV_AXES in seen
  # running statistics: plain arrays in 'batch_stats', one (mean, var) pair per BN
  assert all(not isinstance(x, nn.Partitioned) for x in jax.tree.leaves(abstract["batch_stats"]))


# ------------------------------------------------------------------- (4) train-mode BatchNorm


def test_train_mode_updates_batch_stats(tiny):
  x, nets = tiny
  model, variables = nets["resception"]
  _, state = _apply(model, variables, x, train=True, mutable=["batch_stats"])
  new, old = state["batch_stats"], variables["batch_stats"]
  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old)):
    assert not np.allclose(a, b)
  # stem: running = 0.9 * running + 0.1 * batch statistic (biased variance over B, H, W)
  kernel = variables["params"]["stem_conv"]["conv"]["kernel"]
  y = np_conv(np.asarray(x, np.float64), np.asarray(kernel, np.float64), 1)
  bn = new["stem_conv"]["bn"]
  np.testing.assert_allclose(bn["mean"], 0.1 * y.mean((0, 1, 2)), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(bn["var"], 0.9 + 0.1 * y.var((0, 1, 2)), rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ (5) sown feature maps


EXPECTED_SHAPES = {  # input (2, 16, 12, 3), tiny preset, 10 classes
  "resception": {
    "stem": (2, 16, 12, 8),
    "block1": (2, 16, 12, 16),
    "block2": (2, 8, 6, 24),
    "block3": (2, 8, 6, 24),
    "pool": (2, 24),
    "logits": (2, 10),
  },
  "alexnet": {
    "conv1": (2, 8, 6, 16),  # after its 3x3/2 pool
    "conv2": (2, 4, 3, 16),
    "conv3": (2, 4, 3, 8),
    "conv4": (2, 4, 3, 8),
    "conv5": (2, 2, 2, 8),
    "fc6": (2, 16),
    "fc7": (2, 16),
    "logits": (2, 10),
  },
}
EXPECTED_SHAPES["inception"] = EXPECTED_SHAPES["resception"]


@pytest.mark.parametrize("arch", cn.ARCHS)
def test_intermediates_follow_feature_layers(arch, tiny):
  x, nets = tiny
  model, variables = nets[arch]
  names = cn.feature_layers(arch, "tiny")
  assert names == model.feature_layers() == tuple(EXPECTED_SHAPES[arch])
  logits, state = _apply(model, variables, x, mutable=["intermediates"])
  inter = state["intermediates"]
  assert set(inter) == set(names)
  assert {n: inter[n][0].shape for n in names} == EXPECTED_SHAPES[arch]
  np.testing.assert_array_equal(inter["logits"][0], logits)
  assert cn.feature_shapes(model, x.shape) == EXPECTED_SHAPES[arch]


def test_imagenet_feature_layers():
  names = cn.feature_layers("resception", "imagenet")
  assert names == ("stem", *(f"block{i}" for i in range(1, 10)), "pool", "logits")


# --------------------------------------------------------------------------- (6) bad configs


def test_unknown_arch_and_bad_config_raise():
  with pytest.raises(ValueError, match="unknown arch 'vgg'.*resception, inception, alexnet"):
    cn.build("vgg", "tiny", 10)
  with pytest.raises(ValueError, match="unknown preset"):
    cn.build("resception", "huge", 10)
  bad = dict(cn.PRESETS["tiny"]["resception"], stem_width=3)
  with pytest.raises(ValueError, match="unknown key.*stem_width"):
    cn.build("resception", bad, 10)
  with pytest.raises(ValueError, match="images"):
    cn.build("alexnet", "tiny", 10).init(jax.random.key(0), jnp.zeros((16, 16, 3)), False)
