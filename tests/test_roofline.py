"""The roofline model: per-op FLOPs and bytes read from compiled HLO against hand counts (and
XLA's own cost analysis), the max(compute, memory) arithmetic, collective transfer times and the
utilization derate."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from livermore_brain import hlo, roofline

# 1 GFLOP/s matmul and other, 1 GB/s memory, 1 GB/s link: seconds = FLOPs / 1e9 = bytes / 1e9.
SLOW = roofline.Device("slow", 1e-3, 1e-3, 1.0, 1.0)


def _costs(f, *args):
  compiled = jax.jit(f).lower(*args).compile()
  cost = compiled.cost_analysis()
  return roofline.op_costs(compiled.as_text()), cost


def test_one_dot_is_counted_by_hand():
  a, b = jnp.ones((64, 32)), jnp.ones((32, 16))
  costs, xla = _costs(lambda a, b: a @ b, a, b)
  assert sum(c.matmul_flops for c in costs) == 2 * 64 * 32 * 16
  assert sum(c.other_flops + c.transcendentals for c in costs) == 0
  assert sum(c.bytes for c in costs) == 4 * (64 * 32 + 32 * 16 + 64 * 16)  # read a, b; write out
  assert sum(c.bytes for c in costs) == xla["bytes accessed"]


def test_chained_dots_and_elementwise_by_hand():
  """``tanh(a @ b) @ c + 1``: two dots (they cannot fuse), a tanh and an add; transcendentals
  counted apart from FLOPs (XLA's rules). Bytes: every op's operands and result, whatever XLA
  fused, match its own count."""
  a, b, c = jnp.ones((64, 32)), jnp.ones((32, 16)), jnp.ones((16, 8))
  costs, xla = _costs(lambda a, b, c: jnp.tanh(a @ b) @ c + 1.0, a, b, c)
  assert sum(x.matmul_flops for x in costs) == 2 * 64 * 32 * 16 + 2 * 64 * 16 * 8
  assert sum(x.transcendentals for x in costs) == 64 * 16
  assert sum(x.other_flops for x in costs) == 64 * 8  # the add
  assert sum(x.flops for x in costs) == xla["flops"]
  assert sum(x.bytes for x in costs) == xla["bytes accessed"]
  # Fused or not, at least both inputs of the first dot are read and the result written once.
  assert sum(x.bytes for x in costs) >= 4 * (64 * 32 + 32 * 16 + 16 * 8 + 64 * 8)


def test_elementwise_op_is_memory_bound():
  x = jnp.ones((1000,))
  costs, _ = _costs(lambda x: x * 2.0 + 1.0, x)
  assert sum(c.other_flops for c in costs) == 2000 and sum(c.bytes for c in costs) == 8000
  p = roofline.predict(costs, SLOW)
  assert p["seconds"] == pytest.approx(8000 / 1e9)  # bytes / 1 GB/s > 2000 FLOP / 1 GFLOP/s
  assert p["memory_bound_share"] == 1.0 and p["compute_bound_share"] == 0.0


def test_predict_sums_per_op_maxima():
  ops = [
    roofline.OpCost("dot", "dot", 4e6, 0.0, 0.0, 1e6, "jit(f)/dot_general"),  # 4 ms vs 1 ms
    roofline.OpCost("ew", "fusion", 0.0, 1e5, 1e5, 3e6, "jit(f)/optimizer/add"),  # 0.2 vs 3 ms
  ]
  p = roofline.predict(ops, SLOW, group=lambda c: c.where.split("/")[1])
  assert p["seconds"] == pytest.approx(4e-3 + 3e-3)
  assert p["compute_bound_share"] == pytest.approx(4 / 7)
  assert p["memory_bound_share"] == pytest.approx(3 / 7)
  # One max over the whole program is the looser bound: max(4.2 ms, 4 ms).
  assert p["program_bound_seconds"] == pytest.approx(4.2e-3)
  assert p["groups"]["optimizer"]["seconds"] == pytest.approx(3e-3)
  assert p["groups"]["dot_general"]["bytes"] == 1e6
  # Peaks scale it: a matmul unit 4x faster makes the dot memory-bound at 1 ms.
  fast = roofline.Device("fast", 4e-3, 1e-3, 1.0)
  assert roofline.predict(ops, fast)["seconds"] == pytest.approx(1e-3 + 3e-3)
  # Utilization derates the bound, and only when asked.
  assert roofline.predict(ops, SLOW, utilization=0.5)["seconds"] == pytest.approx(14e-3)
  with pytest.raises(ValueError, match="utilization"):
    roofline.predict(ops, SLOW, utilization=0.0)


def test_collective_seconds_ring():
  mb = (("f32", (250_000,)),)  # 1 MB
  groups4 = ((0, 1, 2, 3),)
  ar = hlo.Collective("ar", "all-reduce", mb, groups4)
  ag = hlo.Collective("ag", "all-gather", mb, groups4)
  cp = hlo.Collective("cp", "collective-permute", mb, ((0, 1), (1, 2)))
  alone = hlo.Collective("x", "all-reduce", mb, ((0,), (1,)))  # groups of one: no transfer
  assert roofline.collective_seconds([ar], 1.0) == pytest.approx(2 * 3 / 4 * 1e-3)
  assert roofline.collective_seconds([ag], 1.0) == pytest.approx(3 / 4 * 1e-3)
  assert roofline.collective_seconds([cp, alone], 2.0) == pytest.approx(0.5e-3)
  p = roofline.predict([], SLOW, collectives=[ar, ag])
  assert p["seconds"] == p["collective_seconds"] == pytest.approx(2.25e-3)


def test_days():
  d = roofline.days(0.5, 100, 86400 * 200.0)  # 200 images/s
  assert d["images_per_sec"] == 200 and d["days"] == pytest.approx(1.0)


def test_gpu_table_precisions():
  tf32, bf16, fp32 = (roofline.gpu("h100", p) for p in ("tf32", "bf16", "fp32"))
  assert bf16.matmul_tflops == pytest.approx(2 * tf32.matmul_tflops)
  assert tf32.matmul_tflops > fp32.matmul_tflops
  assert roofline.gpu("h200").memory_gbps > roofline.gpu("h100").memory_gbps
  assert (
    roofline.precision_for("bfloat16") == "bf16" and roofline.precision_for("float32") == "tf32"
  )
  with pytest.raises(ValueError, match="unknown device"):
    roofline.gpu("v100")
