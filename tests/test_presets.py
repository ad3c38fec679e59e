"""Network presets: the paper's 15e9 parameters without allocating them; tiny/cpu build and run."""

from __future__ import annotations

import math
import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from livermore_brain import sharding
from livermore_brain.models import brain, presets

MB = 1 << 20


def _rss_bytes() -> int:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * 4096


def _real_counts_from_shapes(abstract, spec):
  """K*D + D + 1 per *real* location, read off the stored (padded) shapes."""
  out = []
  for p, g in zip(abstract, spec.geometries):
    l_pad, k, d = p["w"].shape
    assert p["alpha"].shape == (l_pad,) and p["b"].shape == (l_pad, d)
    assert l_pad == g.padded_locations
    out.append(g.num_locations * (k * d + d + 1))
  return out


def test_paper_parameter_count():
  spec = presets.spec("paper")
  counts = spec.param_counts()
  total = sum(counts)
  print(f"\npaper preset: {total:,} parameters ({total / 1e9:.2f}e9)\n{spec.summary()}")
  assert abs(total - 15e9) <= 0.10 * 15e9
  # Hand-derived from §3.1 as the preset reads it (see presets.py): 300x300x3 input,
  # 16x16x3 fields at stride 4, 8x8 'valid' LCN, 4x4 fields of 384 features, dense 4096.
  g1 = (300 - 16) // 4 + 1  # 72
  m1 = g1 - 8 + 1  # 65
  g2 = m1 - 4 + 1  # 62: the paper's 62x62
  m2 = g2 - 8 + 1  # 55
  d1, d2, d3 = 16 * 16 * 3, 4 * 4 * 384, m2 * m2 * 384
  want = [
    g1 * g1 * (384 * d1 + d1 + 1),
    g2 * g2 * (384 * d2 + d2 + 1),
    1 * (4096 * d3 + d3 + 1),
  ]
  assert counts == want
  assert [g.grid for g in spec.geometries] == [(72, 72), (62, 62), (1, 1)]
  assert [spec.output_shape(i) for i in range(3)] == [(65, 65, 384), (55, 55, 384), (1, 1, 4096)]
  assert [g.padded_locations for g in spec.geometries] == [5184, 3848, 1]


def test_paper_abstract_params_allocate_nothing():
  spec = presets.spec("paper")
  rss0 = _rss_bytes()
  tracemalloc.start()
  try:
    abstract = brain.abstract_params(spec)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  growth = _rss_bytes() - rss0
  print(f"\nabstract_params(paper): tracemalloc peak {peak / MB:.1f} MB, RSS +{growth / MB:.1f} MB")
  leaves = jax.tree.leaves(abstract)
  assert len(leaves) == 9
  assert all(type(x) is jax.ShapeDtypeStruct for x in leaves), {type(x) for x in leaves}
  assert all(x.dtype == jnp.float32 for x in leaves)
  assert peak < 200 * MB and growth < 200 * MB
  assert [p["w"].shape for p in abstract] == [
    (5184, 384, 768),
    (3848, 384, 6144),
    (1, 4096, 1161600),
  ]
  stored = sum(math.prod(x.shape) for x in leaves)
  assert stored * 4 > 60e9  # what allocating would have cost, in bytes
  assert _real_counts_from_shapes(abstract, spec) == spec.param_counts()


@pytest.mark.parametrize("name", presets.PRESETS)
def test_param_counts_are_kd_plus_d_plus_1_per_real_location(name):
  spec = presets.spec(name)
  abstract = brain.abstract_params(spec)
  assert _real_counts_from_shapes(abstract, spec) == spec.param_counts()
  for g, s, n in zip(spec.geometries, spec.layers, spec.param_counts()):
    assert n == g.num_locations * (s.features * g.dim + g.dim + 1)
    assert g.padded_locations % (1 if g.is_dense else 8) == 0


@pytest.mark.parametrize(
  "name,grids,outputs",
  [
    ("tiny", [(6, 6), (4, 4), (1, 1)], [(6, 6, 8), (4, 4, 8), (1, 1, 16)]),
    ("cpu", [(14, 14), (6, 6), (1, 1)], [(14, 14, 16), (6, 6, 48), (1, 1, 256)]),
  ],
)
def test_small_presets_build(name, grids, outputs):
  spec = presets.spec(name)
  assert spec.num_layers == 3
  assert [g.grid for g in spec.geometries] == grids
  assert [spec.output_shape(i) for i in range(3)] == outputs
  assert spec.geometries[-1].is_dense
  assert "total" in spec.summary()
  assert all(f > 0 for f in spec.flops_per_image())


def test_tiny_init_and_forward():
  spec = presets.spec("tiny")
  params = jax.jit(brain.init, static_argnums=1)(jax.random.key(0), spec)
  abstract = brain.abstract_params(spec)
  assert jax.tree.structure(params) == jax.tree.structure(abstract)
  for p, a in zip(jax.tree.leaves(params), jax.tree.leaves(abstract)):
    assert p.shape == a.shape and p.dtype == a.dtype
    assert np.all(np.isfinite(np.asarray(p)))
  for p, g in zip(params, spec.geometries):  # unit-norm real filters, zero padded ones
    norms = np.linalg.norm(np.asarray(p["w"], np.float64), axis=-1)
    np.testing.assert_allclose(norms[: g.num_locations], 1.0, atol=1e-6)
    assert not np.any(norms[g.num_locations :])

  h, w, c = spec.input_shape
  images = jnp.asarray(np.random.default_rng(0).standard_normal((3, h, w, c)), jnp.float32)
  maps = jax.jit(brain.forward, static_argnums=2)(params, images, spec)
  assert len(maps) == spec.num_layers + 1
  assert maps[0].shape == (h, w, 3, c)
  for i in range(spec.num_layers):
    oh, ow, k = spec.output_shape(i)
    assert maps[i + 1].shape == (oh, ow, 3, k)
    assert np.all(np.isfinite(np.asarray(maps[i + 1])))


def test_config_overrides_and_unknown_preset():
  cfg = presets.model_config("tiny")
  cfg.layers.layer2.features = 4
  cfg.layers.layer3.lam = 0.5
  spec = presets.spec_from_config(cfg)
  assert [s.name for s in spec.layers] == ["layer1", "layer2", "layer3"]
  assert spec.layers[1].features == 4 and spec.layers[2].lam == 0.5
  assert spec.geometries[2].in_c == 4
  with pytest.raises(ValueError, match=r"unknown preset 'huge'"):
    presets.spec("huge")


# ------------------------------------------------------------------------------------------------
# Sharding helpers (mesh parsing, logical axis rules, divisibility of the presets' layouts).


def _cpu_devices(n=8):
  devs = jax.devices("cpu")
  if len(devs) < n:
    pytest.skip(f"needs {n} CPU devices (tests/conftest.py sets XLA_FLAGS), have {len(devs)}")
  return devs[:n]


@pytest.mark.parametrize(
  "spec,want",
  [
    ("data:2,model:4", (2, 4)),
    ("model:4,data:2", (2, 4)),
    ("2,4", (2, 4)),
    (" 8 , 1 ", (8, 1)),
    ("model:-1", (1, 8)),
    ("data:-1,model:2", (4, 2)),
    ("-1", (8, 1)),
    ("data:8", (8, 1)),
    (None, (8, 1)),
    ("", (8, 1)),
    ((2, 4), (2, 4)),
    ([1, -1], (1, 8)),
  ],
)
def test_sharding_parse_mesh(spec, want):
  assert sharding.parse_mesh(spec, 8) == want


@pytest.mark.parametrize(
  "spec,match",
  [
    ("2,2", r"mesh '2,2' = 2x2 = 4 devices, but 8 are available; .*product is 8"),
    ("data:4,model:4", r"= 4x4 = 16 devices, but 8 are available"),
    ((3, 3), r"3x3 = 9 devices, but 8 are available"),
    ("3,-1", r"mesh '3,-1': 3 does not divide the 8 devices"),
    ("-1,-1", r"at most one mesh axis may be -1"),
    ("data:2,pipeline:4", r"mesh axis 'pipeline' unknown"),
    ("data:two", r"mesh size 'two' is not an integer"),
    ((1, 2, 4), r"mesh must have two axes"),
    ("0,8", r"mesh sizes must be positive"),
  ],
)
def test_sharding_parse_mesh_rejects(spec, match):
  with pytest.raises(ValueError, match=match):
    sharding.parse_mesh(spec, 8)


def test_sharding_logical_to_spec():
  p = sharding.logical_to_spec
  assert p(("batch", "locations", None)) == P("data", "model", None)
  assert p(("locations", "features", "inputs")) == P("model", None, None)
  assert p(("dense", "neurons", "inputs")) == P(None, "model", None)
  assert p(("mystery", "batch")) == P(None, "data")  # unknown names: replicated
  assert p(("locations", "neurons")) == P("model", None)  # a mesh axis splits one dimension
  assert p(None) == P()
  rules = sharding.rules_from_config({"batch": "model", "locations": "none", "neurons": "data"})
  assert rules[:3] == (("batch", "model"), ("locations", None), ("neurons", "data"))
  assert dict(rules)["mlp"] == "model"  # names the config leaves out keep their default
  assert p(("batch", "locations"), rules) == P("model", None)
  # A fallback: "neurons" takes model, or data when model already splits another dimension.
  fb = sharding.rules_from_config({"locations": "model", "neurons": "model|data"})
  assert fb[:3] == (("locations", "model"), ("neurons", "model"), ("neurons", "data"))
  assert p(("neurons", "inputs"), fb) == P("model", None)
  assert p(("locations", "neurons"), fb) == P("model", "data")
  assert sharding.rules_from_config(None) == sharding.DEFAULT_RULES
  with pytest.raises(ValueError, match=r"sharding rule 'batch' -> 'pipe': mesh axis must be"):
    sharding.rules_from_config([("batch", "pipe")])


def test_sharding_named_shardings_and_make_mesh():
  mesh = sharding.make_mesh("data:2,model:4", devices=_cpu_devices())
  assert dict(mesh.shape) == {"data": 2, "model": 4}
  spec = presets.spec("tiny")
  shardings = sharding.named_shardings(mesh, brain.param_axes(spec))
  assert shardings[0]["w"].spec == P("model", None, None)
  assert shardings[0]["alpha"].spec == P("model")
  assert shardings[2]["w"].spec == P(None, "model", None)  # dense: neurons split
  sharding.check_divisible(mesh, brain.abstract_params(spec), shardings)


@pytest.mark.parametrize("mesh_spec", ["8,1", "4,2", "2,4", "1,8"])
def test_sharding_paper_layout_divides_every_model_axis(mesh_spec):
  mesh = sharding.make_mesh(mesh_spec, devices=_cpu_devices())
  spec = presets.spec("paper")
  shardings = sharding.named_shardings(mesh, brain.param_axes(spec))
  sharding.check_divisible(mesh, brain.abstract_params(spec), shardings, what="paper ")


def test_sharding_check_divisible_message():
  mesh = sharding.make_mesh("1,8", devices=_cpu_devices())
  cfg = presets.model_config("tiny")
  cfg.location_multiple = 1  # 6x6 = 36 locations: not divisible by 8
  spec = presets.spec_from_config(cfg)
  shardings = sharding.named_shardings(mesh, brain.param_axes(spec))
  with pytest.raises(
    ValueError,
    match=r"tiny \[0\]\['\w+'\]: dimension 0 of size 36 is split over mesh axis 'model' of "
    r"size 8, which does not divide it; choose a 'model' size that divides 36",
  ):
    sharding.check_divisible(mesh, brain.abstract_params(spec), shardings, what="tiny ")
