"""The AOT planner: collective parsing on known programs, plans of the tiny RICA preset on 1x8 and
2x4 meshes (memory and FLOPs positive and consistent with the parameter counts), and `plan_task`
on any family's step (RICA's equals `plan`'s last stage; supervised ResCeption on 2x4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from experiments import timing
from experiments.configs import resception, rica_yfcc
from livermore_brain import families, hlo, planner
from livermore_brain import sharding as shd
from livermore_brain.models import convnets, presets
from livermore_brain.rica import state as state_lib
from livermore_brain.rica.task import RicaTask

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MESH_2x4 = {"data": 2, "model": 4}


@pytest.mark.parametrize(
  "text, groups",
  [
    ("replica_groups={{0,1,2,3},{4,5,6,7}}, to_apply=%add", [[0, 1, 2, 3], [4, 5, 6, 7]]),
    ("replica_groups=[2,4]<=[8], to_apply=%add", [[0, 1, 2, 3], [4, 5, 6, 7]]),
    ("replica_groups=[4,2]<=[2,4]T(1,0), dims={0}", [[0, 4], [1, 5], [2, 6], [3, 7]]),
    (
      "replica_groups=mesh['axis_0'=4,'axis_1'=2], device_ids=([2,4]T(1,0)) {'axis_0'}, x=1",
      [[0, 1, 2, 3], [4, 5, 6, 7]],
    ),
    (
      "replica_groups=mesh['axis_0'=1,'axis_1'=2,'axis_2'=4] {'axis_2'}",
      [[0, 1, 2, 3], [4, 5, 6, 7]],
    ),
    ("replica_groups=mesh['a'=2,'b'=4] {'a'}", [[0, 4], [1, 5], [2, 6], [3, 7]]),
    ("source_target_pairs={{0,1},{1,0}}, metadata={}", [[0, 1], [1, 0]]),
  ],
)
def test_parse_groups_formats(text, groups):
  assert [list(g) for g in hlo.parse_groups(text)] == groups


def test_empty_groups_mean_every_device():
  assert hlo.parse_groups("replica_groups={}, to_apply=%add") is None
  c = hlo.Collective("x", "all-reduce", (("f32", ()),), None)
  assert hlo.collective_axes(c, MESH_2x4) == ("data", "model")


def test_parse_collectives_on_a_known_program():
  mesh = shd.make_mesh("data:2,model:4")

  def f(x):
    a = jax.lax.psum(x, "model")  # (4, 4) f32 over model
    b = jax.lax.all_gather(x, "data", tiled=True)  # (8, 4) over data
    c = jax.lax.psum(jnp.sum(x), ("data", "model"))  # a scalar over everything
    d = jax.lax.ppermute(x, "model", [(i, (i + 1) % 4) for i in range(4)])
    return a, b, c, d

  g = jax.shard_map(
    f,
    mesh=mesh,
    in_specs=P("data", "model"),
    out_specs=(P("data", "model"), P(None, "model"), P(), P("data", "model")),
    check_vma=False,
  )
  x = jax.ShapeDtypeStruct((8, 16), jnp.float32, sharding=NamedSharding(mesh, P("data", "model")))
  colls = hlo.parse_collectives(jax.jit(g).lower(x).compile().as_text())
  got = sorted((c.op, hlo.collective_axes(c, MESH_2x4), c.bytes, c.is_scalar) for c in colls)
  assert got == [
    ("all-gather", ("data",), 8 * 4 * 4, False),
    ("all-reduce", ("data", "model"), 4, True),
    ("all-reduce", ("model",), 4 * 4 * 4, False),
    ("collective-permute", ("model",), 4 * 4 * 4, False),
  ]
  summary = hlo.summarize_collectives(colls, MESH_2x4)
  assert summary["model"]["count"] == 2 and summary["model"]["nonscalar_count"] == 2
  assert summary["data+model"]["nonscalar_count"] == 0
  assert summary["data"]["ops"] == {"all-gather": 1}


def test_reduce_scatter_and_tuple_bytes():
  line = (
    "  %rs = (f32[2,3]{1,0}, bf16[4]{0}) reduce-scatter(%a, %b), channel_id=3, "
    'replica_groups={{0,1}}, dimensions={0}, to_apply=%add, metadata={op_name="jit(f)/x"}'
  )
  (c,) = hlo.parse_collectives(line)
  assert c.op == "reduce-scatter" and c.where == "jit(f)/x"
  assert c.bytes == (2 * 3 * 4 + 4 * 2) * 2  # operand = result x group size


@pytest.fixture(scope="module", params=["data:1,model:8", "data:2,model:4"])
def tiny_plan(request):
  spec = presets.spec("tiny")
  tx = optax.adam(1e-3)
  mesh = shd.make_mesh(request.param)
  return spec, tx, mesh, planner.plan(spec, tx, mesh, 16, stages="all")


def test_plan_memory_is_consistent_with_the_state(tiny_plan):
  spec, tx, mesh, p = tiny_plan
  b = p["bytes_per_device"]
  assert all(v > 0 for v in b.values())
  state = state_lib.abstract_state(spec, tx)
  state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
  image_bytes = 16 * int(np.prod(spec.input_shape)) * 4
  # Every device holds its shard of the state and of the batch: at least an even share, at most
  # everything (replicated over data).
  assert (state_bytes + image_bytes) / mesh.size <= b["arguments"] <= state_bytes + image_bytes
  assert b["aliased"] >= 0.9 * (b["arguments"] - image_bytes / mesh.shape["data"])  # donated
  assert b["total"] == b["arguments"] + b["outputs"] - b["aliased"] + b["temporaries"]
  assert p["params"]["total"] == sum(spec.param_counts())
  assert p["devices"] == 8 and p["mesh"] == dict(mesh.shape)


def test_plan_flops_are_consistent_with_the_parameters(tiny_plan):
  spec, tx, mesh, p = tiny_plan
  w = [g.padded_locations * s.features * g.dim for g, s in zip(spec.geometries, spec.layers)]
  # 5 matmuls per trained layer and one forward-copy encode per layer feeding another: per image
  # 2 * (5 * sum(w) + w[0] + w[1]) FLOPs.
  assert p["matmul_flops_per_step"] == 16 * 2 * (5 * sum(w) + w[0] + w[1])
  assert p["matmul_flops_per_step"] <= p["flops_per_step"] <= 2 * p["matmul_flops_per_step"]
  assert p["flops_per_step"] == pytest.approx(p["flops_per_device"] * 8)
  flops = [s["flops_per_step"] for s in p["stages"]]
  assert len(flops) == 3 and flops[0] < flops[1] < flops[2]  # each stage adds a layer
  proj = p["projection"]
  assert proj["images_per_sec"] > 0 and proj["days"] > 0
  # The roofline's per-op costs add up to XLA's own count of the program (same rules; XLA counts
  # only the part of an operand that a fused slice reads: ~0.3% fewer bytes here).
  ops, xla = p["op_totals"], p["xla_cost"]
  assert ops["flops"] == pytest.approx(xla["flops"], rel=0.01)  # reductions: n vs n - 1 adds
  assert ops["bytes"] == pytest.approx(xla["bytes_accessed"], rel=0.02)
  assert ops["matmul_flops"] == pytest.approx(p["matmul_flops_per_step"] / mesh.size, rel=0.05)
  r = p["roofline"]
  assert r["seconds"] == pytest.approx(r["ops_seconds"] + r["collective_seconds"])
  assert r["compute_bound_share"] + r["memory_bound_share"] == pytest.approx(1.0)
  assert proj["step_seconds"] == r["seconds"] and r["groups"]["optimizer update + projection"]


def test_untied_layers_have_no_model_collectives_beyond_scalars(tiny_plan):
  _, _, mesh, p = tiny_plan
  assert set(p["untied"]) == {"layer1", "layer2"}
  for u in p["untied"].values():
    assert u["model_nonscalar_collectives"] == 0
    if mesh.shape["data"] > 1:  # data parallel: the gradient is summed over data
      assert u["collectives"]["data"]["nonscalar_count"] >= 1
  # The full step does move maps between layers and reduce the dense layer over model.
  assert p["collectives"]["model"]["nonscalar_count"] > 0


def test_scale_plan_cli_tiny():
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  out = subprocess.run(
    [sys.executable, "-m", "experiments.scale_plan",
     "--config=experiments/configs/rica_yfcc.py:tiny", "--mesh=data:2,model:4", "--isolate=false"],
    cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert out.returncode == 0, out.stderr[-3000:]
  plan = json.loads(out.stdout.strip().splitlines()[-1])
  for key in ("params", "devices", "mesh", "bytes_per_device", "flops_per_step", "collectives",
              "projection"):  # fmt: skip
    assert key in plan
  assert plan["devices"] == 8 and plan["mesh"] == {"data": 2, "model": 4}
  for key in ("arguments", "outputs", "temporaries", "total"):
    assert plan["bytes_per_device"][key] > 0
  assert "bytes per device" in out.stdout and plan["fits"]


def test_plan_task_of_rica_is_the_last_stage_of_plan(tiny_plan):
  """`plan_task` on a RICA task compiles the same step as `plan`'s last stage (every layer)."""
  spec, tx, mesh, p = tiny_plan
  if mesh.shape["data"] == 1:
    pytest.skip("one mesh is enough (a compile saved)")
  task = RicaTask.from_parts(spec, tx)
  assert task.plan_step() == 2 and task.sched.active(task.plan_step()) == (True,) * 3
  q = planner.plan_task(task, mesh, 16)
  assert q["family"] == "rica" and q["step"] == 2
  assert q["bytes_per_device"] == p["bytes_per_device"]
  assert (
    q["flops_per_step"] == p["flops_per_step"] and q["flops_per_image"] == q["flops_per_step"] / 16
  )
  assert q["collectives"] == p["collectives"]
  assert q["params"]["total"] == p["params"]["stored"]  # the state's leaves (padded locations)


def test_rica_task_plans_its_first_all_layer_step():
  config = rica_yfcc.get_config("tiny")  # layer 2 joins at step 10, layer 3 at step 20
  task = families.make_task(config)
  assert task.plan_step() == 20 and task.sched.active(19) == (True, True, False)


@pytest.fixture(scope="module")
def supervised_tiny():
  """The supervised tiny preset's task on a 2x4 mesh, shared so that the benchmark test below
  reuses the step the plan compiled (same jitted function, same shardings: one compile)."""
  config = resception.get_config("tiny")
  config.unlock()
  config.mesh = "data:2,model:4"
  task = families.make_task(config)
  mesh = shd.make_mesh(config.mesh)
  rules = shd.rules_from_config(config.rules)
  return config, task, mesh, planner.plan_task(task, mesh, int(config.batch_size), rules=rules)


def test_plan_task_supervised_tiny_on_2x4(supervised_tiny):
  _, task, mesh, p = supervised_tiny
  assert p["family"] == "supervised" and p["step"] == 0 and p["devices"] == 8
  assert p["params"]["total"] == convnets.param_count(task.model, (1, *task.input_shape))
  b = p["bytes_per_device"]
  assert b["arguments"] > 0 and b["temporaries"] > 0 and b["total"] > 0
  assert b["aliased"] > 0  # the state is donated
  assert p["flops_per_step"] == pytest.approx(p["flops_per_device"] * 8) and p["flops_per_step"] > 0
  assert p["collectives"]["data"]["nonscalar_count"] > 0  # gradients summed over data
  assert p["projection"]["images_per_sec"] > 0


def test_benchmark_times_the_planned_step(supervised_tiny):
  """`experiments.timing.time_step` runs the supervised task's own step (random images and
  labels of its fields) and counts the same XLA FLOPs as the plan."""
  config, task, _, p = supervised_tiny
  r = timing.time_step(config, steps=10, warmup=1, task=task)
  assert r["family"] == "supervised" and r["fields"] == ["image", "label"] and r["finite"]
  assert r["mesh"] == {"data": 2, "model": 4} and r["batch"] == 32
  for key in ("step_seconds", "images_per_sec", "flops_per_step", "achieved_gflops"):
    assert r[key] > 0, key
  assert r["flops_per_step"] == p["flops_per_step"]
  assert r["matmul_flops_per_step"] is None  # RICA's matmul count only


def test_plan_task_rejects_a_batch_the_mesh_cannot_split():
  task = families.make_task(resception.get_config("tiny"))
  with pytest.raises(ValueError, match="not divisible by the mesh's data axis"):
    planner.abstract_inputs(task, shd.make_mesh("data:8,model:1"), 12)
