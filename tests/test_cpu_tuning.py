"""`livermore_brain.cpu_tuning`: what it adds to XLA_FLAGS, and that the allocator setting really
removes the per-call page faults of a large buffer (measured in fresh processes)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from livermore_brain import cpu_tuning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ynn_flag_is_added_once_and_never_over_a_user_value(monkeypatch):
  monkeypatch.setattr(cpu_tuning, "_jaxlib_version", lambda: "0.10.2")
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  assert cpu_tuning._add_ynn_flag(env)  # noqa: SLF001
  assert env["XLA_FLAGS"] == (
    "--xla_force_host_platform_device_count=2 "
    "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_REDUCE"
  )
  assert not cpu_tuning._add_ynn_flag(env)  # noqa: SLF001 - already there
  mine = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT"}
  assert not cpu_tuning._add_ynn_flag(mine)  # noqa: SLF001
  assert mine["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT"
  # an untested jaxlib might not know the flag, and XLA aborts on unknown flags
  monkeypatch.setattr(cpu_tuning, "_jaxlib_version", lambda: "0.11.0")
  other = {}
  assert not cpu_tuning._add_ynn_flag(other) and "XLA_FLAGS" not in other  # noqa: SLF001


_FAULTS = """
import experiments  # applies livermore_brain.cpu_tuning unless LB_CPU_TUNING=0
import resource, statistics, jax, numpy as np
from experiments.configs import rica_yfcc
from livermore_brain import cpu_tuning, sharding as shd
from livermore_brain.rica import step as step_lib
from livermore_brain.rica.task import RicaTask
config = rica_yfcc.get_config("cpu")  # its step needs a 55 MB temporary buffer
task = RicaTask(config)
mesh, rules = shd.make_mesh(config.mesh), shd.rules_from_config(config.get("rules"))
shardings = task.state_shardings(mesh, rules)
fn = step_lib.make_train_step(task.spec, task.tx, (True,) * 3, mesh, shardings, rules)
state = task.init_state(jax.random.key(0), mesh, shardings)
images = np.random.default_rng(0).standard_normal((config.batch_size, 64, 64, 3), np.float32)
images = {"image": images}
compiled = fn.lower(state, images).compile()
temp = compiled.memory_analysis().temp_size_in_bytes
faults = []
for i in range(13):
  r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  state, metrics = compiled(state, images)
  jax.block_until_ready(state)
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
print(statistics.median(faults[3:]), temp, len(cpu_tuning.applied()))
"""


def _step_faults(tuning: str) -> tuple[float, int, int]:
  """Median minor page faults per training step of the cpu preset, its temp bytes, settings."""
  env = dict(os.environ, LB_CPU_TUNING=tuning, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  out = subprocess.run(
    [sys.executable, "-c", _FAULTS], cwd=ROOT, env=env, capture_output=True, text=True,
    timeout=300, check=True,
  )  # fmt: skip
  faults, temp, n = out.stdout.split()[-3:]
  return float(faults), int(temp), int(n)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_tuned_training_step_reuses_its_temporary_buffer():
  untuned, temp, n_off = _step_faults("0")
  tuned, _, n_on = _step_faults("1")
  pages = temp / os.sysconf("SC_PAGE_SIZE")
  # above glibc's largest dynamic mmap threshold (32 MiB on 64-bit): malloc maps it afresh
  assert n_off == 0 and n_on == 2 and temp > 32 * 2**20
  assert untuned > 0.5 * pages, (untuned, pages)  # the buffer is mapped afresh every step
  assert tuned < 0.02 * pages, (tuned, pages)  # reused: no faults in a typical step
