"""`experiments.launch`: environment per process, prefixed output, success and failure paths."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from experiments import launch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, timeout=120):
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  t = time.monotonic()
  out = subprocess.run(
    [sys.executable, "-m", "experiments.launch", *args],
    cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
  )  # fmt: skip
  return out.returncode, out.stdout + out.stderr, time.monotonic() - t


def test_process_env_cpu_and_gpu():
  base = {"XLA_FLAGS": "--foo --xla_force_host_platform_device_count=8", "PATH": "/bin"}
  env = launch.process_env(base, 1, 2, "localhost:1234", "cpu", 4)
  assert env["LB_COORDINATOR"] == "localhost:1234"
  assert (env["LB_NUM_PROCESSES"], env["LB_PROCESS_ID"]) == ("2", "1")
  assert env["XLA_FLAGS"] == "--foo --xla_force_host_platform_device_count=4"
  assert env["JAX_PLATFORMS"] == "cpu" and env["PATH"] == "/bin"
  gpu = launch.process_env({}, 1, 2, "localhost:1", "gpu", 0, gpus=8)
  assert gpu["CUDA_VISIBLE_DEVICES"] == "4,5,6,7" and "JAX_PLATFORMS" not in gpu


def test_success_prefixes_every_process():
  code, out, _ = _run(
    "--num_processes=3", "--devices_per_process=2", "--",
    sys.executable, "-c",
    "import os; print('id', os.environ['LB_PROCESS_ID'], os.environ['LB_NUM_PROCESSES'], "
    "os.environ['XLA_FLAGS'])",
  )  # fmt: skip
  assert code == 0, out
  for i in range(3):
    (line,) = [ln for ln in out.splitlines() if ln.startswith(f"[p{i}] id {i} 3 ")]
    assert line.endswith(" --xla_force_host_platform_device_count=2"), line


def test_jax_distributed_comes_up():
  code, out, _ = _run(
    "--num_processes=2", "--devices_per_process=2", "--",
    sys.executable, "-c",
    "from livermore_brain import distributed\n"
    "assert distributed.initialize({'heartbeat_timeout_s': 10})\n"
    "import jax\n"
    "print('jax', jax.process_index(), jax.process_count(), jax.device_count())",
  )  # fmt: skip
  assert code == 0, out
  assert "[p0] jax 0 2 4" in out and "[p1] jax 1 2 4" in out


def test_failure_stops_the_others_quickly():
  # p1 fails after a moment; p0 ignores SIGTERM and would sleep for minutes: it must be killed.
  script = (
    'if [ "$LB_PROCESS_ID" = 1 ]; then sleep 0.5; echo boom; exit 3; fi; trap "" TERM; sleep 300'
  )
  code, out, elapsed = _run("--num_processes=2", "--grace_s=1", "--", "bash", "-c", script)
  assert code == 3, out
  assert "[p1] boom" in out and "p1 exited with status 3" in out and "SIGKILL" in out
  assert elapsed < 30


def test_timeout_and_missing_command():
  code, out, elapsed = _run(
    "--num_processes=2", "--timeout_s=1", "--grace_s=1", "--", "sleep", "60"
  )
  assert code == 124 and "timeout" in out and elapsed < 30
  code, out, _ = _run("--num_processes=2")
  assert code == 2 and "no command given" in out


def test_local_device_ids_under_slurm():
  from livermore_brain import distributed

  node = {"SLURM_JOB_ID": "7", "SLURM_NTASKS_PER_NODE": "1", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
  assert distributed.local_device_ids(None, node) == [0, 1, 2, 3]  # one process drives the node
  per_gpu = {"SLURM_JOB_ID": "7", "SLURM_NTASKS_PER_NODE": "8", "SLURM_NTASKS": "16"}
  assert distributed.local_device_ids(None, per_gpu) is None  # JAX: the GPU of SLURM_LOCALID
  assert distributed.local_device_ids("2,3", {}) == [2, 3]
  assert distributed.local_device_ids(
    None, {"LB_LOCAL_DEVICE_IDS": "all", "SLURM_GPUS_ON_NODE": "8"}
  ) == list(range(8))
  assert distributed.local_device_ids(None, {}) is None


def test_detected_cluster(monkeypatch):
  from livermore_brain import distributed

  for k in ("SLURM_JOB_ID", "SLURM_NTASKS", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"):
    monkeypatch.delenv(k, raising=False)
  assert distributed.detected_cluster() is None
  assert distributed.initialize({"enabled": "auto"}) is False  # nothing to join: off
  monkeypatch.setenv("SLURM_JOB_ID", "1")
  monkeypatch.setenv("SLURM_NTASKS", "1")
  assert distributed.detected_cluster() is None  # a single task is not a multi-process job
  monkeypatch.setenv("SLURM_NTASKS", "4")
  assert distributed.detected_cluster() == "slurm"


def test_gpu_platform_needs_the_cuda_plugin():
  """Without jax's CUDA plugin a GPU job would silently train on the CPU: the launcher refuses
  and names requirements-gpu.txt (this machine has no plugin; with one it would go on)."""
  if launch.cuda_plugin() is not None:
    pytest.skip("the CUDA plugin is installed here")
  out = subprocess.run(
    [sys.executable, "-m", "experiments.launch", "--platform=gpu", "--", "true"],
    cwd=ROOT, capture_output=True, text=True, timeout=120,
  )  # fmt: skip
  assert out.returncode != 0 and "requirements-gpu.txt" in out.stderr
