"""`experiments.benchmark` in tiny mode: runs end to end and emits its JSON keys; its step timing
works for any family (the supervised tiny preset)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import timing
from experiments.configs import resception
from livermore_brain import families

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = (
  "images_per_sec",
  "achieved_gflops",
  "ceiling_gflops",
  "fraction_of_ceiling",
  "data_images_per_sec",
)


def test_benchmark_tiny_emits_json():
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # one CPU device, as a user would run it
  out = subprocess.run(
    [sys.executable, "-m", "experiments.benchmark",
     "--config=experiments/configs/rica_yfcc.py:tiny", "--steps=10", "--warmup=1",
     "--matmul_size=256", "--matmul_repeats=3", "--data_batches=3", "--rounds=1",
     "--bandwidth_mb=32", "--also_autodiff"],
    cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  for key in KEYS:
    assert isinstance(result[key], float) and result[key] > 0, key
  assert result["fraction_of_ceiling"] == result["achieved_gflops"] / result["ceiling_gflops"]
  assert result["step"]["finite"] and result["step"]["batch"] == 16
  assert result["step"]["flops_per_step"] >= result["step"]["matmul_flops_per_step"] > 0
  assert "matmul ceiling" in out.stdout and "input pipeline alone" in out.stdout
  # Predicted (roofline at this run's measured ceiling and bandwidth) next to measured.
  assert result["memory_gbps"] > 0 and result["predicted_step_seconds"] > 0
  measured, predicted = result["measured_step_seconds"], result["predicted_step_seconds"]
  assert result["measured_over_predicted"] == pytest.approx(measured / predicted)  # one round
  # A sum of per-op max(compute, memory) is at least the whole program's compute and memory time.
  flops, nbytes = result["predicted"]["flops"], result["predicted"]["bytes"]
  assert nbytes == pytest.approx(result["step"]["xla_bytes_accessed"], rel=0.02)
  assert predicted >= (1 - 1e-9) * max(
    flops / (result["ceiling_gflops"] * 1e9), nbytes / (result["memory_gbps"] * 1e9)
  )
  b = result["breakdown"]
  assert b["beyond_matmuls"] == pytest.approx(measured / b["matmul_seconds"] - 1)
  assert "measured / predicted" in out.stdout and "step beyond its matmuls" in out.stdout
  # The floor: the step's non-matmul bytes at the stream bandwidth per CPU-second, over the
  # matmuls' CPU time; those bytes are part of the program's (the roofline's) bytes.
  nb, sp, (row,) = b["nonmatmul_bytes"], b["spread"], result["rounds"]
  assert 0 < nb["total"] == pytest.approx(sum(v for k, v in nb.items() if k != "total"))
  assert nb["total"] < nbytes and nb["optimizer update + projection"] > 0
  assert sp["floor_beyond_matmuls_cpu"]["median"] == pytest.approx(
    nb["total"] / (sp["memory_gbps_cpu"]["median"] * 1e9) / row["matmul_cpu_seconds"]
  )
  # The same step with autodiff's backward of the cost (the hand-written one's reference), in
  # the same round: its non-matmul ops move more (it writes the scaled residual before the
  # products).
  ref = b["optimizers"]["adam, autodiff"]
  assert set(b["optimizers"]) == {"adam, autodiff"} and ref["step_cpu_seconds"]["median"] > 0
  assert ref["nonmatmul_bytes"]["total"] > nb["total"]
  assert "same step with adam, autodiff" in out.stdout


def test_benchmark_breakdown_runs_on_the_step_mesh():
  """With two devices on ``model`` the step and its matmuls alone both run split over them."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  out = subprocess.run(
    [sys.executable, "-m", "experiments.benchmark",
     "--config=experiments/configs/rica_yfcc.py:tiny", "--config.mesh=data:1,model:2",
     "--steps=10", "--warmup=1", "--matmul_size=256", "--matmul_repeats=3", "--skip_data",
     "--rounds=1", "--bandwidth_mb=32", "--also_optimizers=sgd"],
    cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["step"]["mesh"] == {"data": 1, "model": 2}
  b = result["breakdown"]
  assert b["matmul_devices"] == 2 and b["matmul_gflops"] > 0
  assert result["data_images_per_sec"] is None and "on 2 device(s)" in out.stdout
  # The same step with SGD, timed in the same round against the same matmuls alone.
  sgd, (row,) = b["optimizers"]["sgd"], result["rounds"]
  assert sgd["step_cpu_seconds"]["median"] > 0 and "same step with sgd" in out.stdout
  assert sgd["beyond_matmuls_cpu"]["median"] == pytest.approx(
    sgd["step_cpu_seconds"]["median"] / row["matmul_cpu_seconds"] - 1
  )


def test_benchmark_rejects_too_few_steps():
  out = subprocess.run(
    [sys.executable, "-m", "experiments.benchmark",
     "--config=experiments/configs/rica_yfcc.py:tiny", "--steps=3"],
    cwd=ROOT, capture_output=True, text=True, timeout=120,
  )  # fmt: skip
  assert out.returncode == 2 and "at least 10" in out.stderr


def test_synthetic_batch_has_the_task_fields():
  """What `time_step` feeds a family without data here: random images, labels in range(classes)
  (the supervised step itself is timed in tests/test_planner.py, sharing the plan's compile)."""
  task = families.make_task(resception.get_config("tiny"))
  batch = timing.synthetic_batch(task, 32, num_classes=10)
  assert sorted(batch) == ["image", "label"] and batch["image"].shape == (32, 16, 16, 1)
  assert batch["image"].dtype == np.float32 and batch["label"].shape == (32,)
  assert batch["label"].dtype == np.int32 and 0 <= batch["label"].min() <= batch["label"].max() < 10
  with pytest.raises(ValueError, match="num_classes"):
    timing.synthetic_batch(task, 32)


def test_nonmatmul_bytes_counts_what_a_slice_copies():
  """The floor's bytes: ops without matmul FLOPs, by group; a slice counts its result read and
  written (not its whole operand, as the roofline's per-op bytes do)."""
  from livermore_brain import roofline

  costs = [
    roofline.OpCost("dot", "dot", 4e6, 0.0, 0.0, 9e6, "jit(f)/dot_general", 1e6),
    roofline.OpCost("fusion.1", "fusion", 0.0, 1e5, 0.0, 3e6, "jit(f)/optimizer/add", 1e6),
    roofline.OpCost("slice_bitcast_fusion", "fusion", 0.0, 0.0, 0.0, 5e6, "jit(f)/slice", 1e6),
    roofline.OpCost("gather_fusion", "fusion", 0.0, 0.0, 0.0, 4e6, "jit(f)/gather", 2e6),
  ]
  got = timing.nonmatmul_bytes(costs)
  assert got == {"total": 9e6, "optimizer update + projection": 3e6, "other": 2e6, "gathers": 4e6}
