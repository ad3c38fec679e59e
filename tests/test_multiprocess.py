"""Multi-process training: the tiny preset as 2 processes x 4 CPU devices (`experiments.launch`)
against 1 process x 8 devices on the same ``data:2,model:4`` mesh; and a killed process ending
the job with a non-zero exit in bounded time."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from experiments.configs import rica_yfcc
from livermore_brain import data as data_lib
from livermore_brain import families
from livermore_brain.rica import run as run_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 24  # the tiny schedule: layer2 joins at step 10, layer3 at step 20
MESH = "data:2,model:4"
# Same SPMD program, same shards on the same logical devices; only the reductions across the
# two processes run through gloo instead of in-process, which may sum in another order.
RTOL, ATOL = 1e-4, 1e-6


def _config(**kw):
  c = rica_yfcc.get_config("tiny")
  c.tensorboard = False
  c.mesh = MESH
  c.num_steps = STEPS
  for k, v in kw.items():
    c[k] = v
  return c


def _launch(workdir, num_steps=STEPS, extra=(), timeout_s=240):
  cmd = [
    sys.executable, "-m", "experiments.launch", "--num_processes=2", "--devices_per_process=4",
    f"--timeout_s={timeout_s}", "--grace_s=3", "--",
    sys.executable, "-m", "experiments.rica_yfcc", "--config=experiments/configs/rica_yfcc.py:tiny",
    f"--workdir={workdir}", f"--config.mesh={MESH}", f"--config.num_steps={num_steps}",
    "--config.tensorboard=false", "--config.distributed.heartbeat_timeout_s=10", *extra,
  ]  # fmt: skip
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # the launcher sets 4 devices per process
  return subprocess.Popen(
    cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
  )


def _params(workdir):
  run = run_dir.load(workdir, devices=jax.devices()[:1])
  return run.step, jax.tree.map(np.asarray, jax.device_get(run.state.params))


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("two_procs"))
  p = _launch(wd)
  out, _ = p.communicate(timeout=300)
  assert p.returncode == 0, out[-4000:]
  assert "[p0] " in out and "[p1] " in out
  assert os.path.exists(os.path.join(wd, "metrics.jsonl"))  # written by process 0
  return wd


def _compare(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=RTOL, atol=ATOL)


def test_input_pipeline_is_process_count_invariant():
  """What makes the comparison below meaningful: the same global batches on 1 or 2 processes."""
  cfg = _config().data
  kw = dict(image_size=16, channels=3, global_batch=16, seed=0)
  one = data_lib.make_pipeline(cfg, process_index=0, process_count=1, **kw).iterate(0)
  two = [
    data_lib.make_pipeline(cfg, process_index=p, process_count=2, **kw).iterate(0) for p in range(2)
  ]
  for _ in range(3):
    want = next(one)["image"]
    np.testing.assert_array_equal(want, np.concatenate([next(t)["image"] for t in two]))


def test_two_processes_match_one_process_run(two_process_run, tmp_path):
  assert jax.device_count() == 8 and jax.process_count() == 1
  families.train(_config(), str(tmp_path))
  step_a, a = _params(two_process_run)
  step_b, b = _params(str(tmp_path))
  assert step_a == step_b == STEPS
  _compare(a, b)


def test_killed_process_ends_the_job(tmp_path):
  p = _launch(str(tmp_path), num_steps=100_000, extra=["--config.log_every=1"])
  lines, pids, training = [], {}, threading.Event()

  def pump():
    for line in p.stdout:
      lines.append(line)
      m = re.match(r"\[launch\] started p(\d) \(pid (\d+)\)", line)
      if m:
        pids[int(m.group(1))] = int(m.group(2))
      if re.match(r"\[p0\] step\s+\d+/", line):
        training.set()

  t = threading.Thread(target=pump, daemon=True)
  t.start()
  try:
    assert training.wait(180), "training never started:\n" + "".join(lines[-40:])
    os.kill(pids[1], signal.SIGKILL)
    killed = time.monotonic()
    code = p.wait(timeout=60)
  finally:
    if p.poll() is None:
      p.kill()
  elapsed = time.monotonic() - killed
  t.join(5)
  assert code != 0
  assert elapsed < 30, f"job took {elapsed:.0f} s to end after the kill"
  assert any("p1 killed by SIGKILL" in line for line in lines), "".join(lines[-20:])
  for pid in pids.values():  # nothing left behind
    with pytest.raises(ProcessLookupError):
      os.kill(pid, 0)


def test_broken_step_is_moved_aside_on_every_process(two_process_run, tmp_path):
  """Issue #17 on 2 processes: the newest step (24) damaged in process 1's files; the rerun of
  the same command agrees on every process that it is broken, process 0 renames it to
  ``24.broken-1``, both resume from 20 and save 24 afresh: the parameters of the undamaged run."""
  import glob
  import shutil

  wd = str(tmp_path / "run")
  shutil.copytree(two_process_run, wd)
  ck = os.path.join(wd, "checkpoints")
  files = glob.glob(os.path.join(ck, "24", "state", "ocdbt.process_1", "d", "*"))
  big = max(files, key=os.path.getsize)
  with open(big, "r+b") as f:
    f.seek(os.path.getsize(big) // 2)
    f.write(os.urandom(256))
  p = _launch(wd)
  out, _ = p.communicate(timeout=300)
  assert p.returncode == 0, out[-4000:]
  assert f"[p0] WARNING: checkpoint {ck}/24 is broken" in out and "24.broken-1" in out
  assert f"[p0] resumed from {ck}/20" in out  # (only process 0 prints)
  assert sorted(os.listdir(ck)) == ["20", "24", "24.broken-1"]
  step_a, a = _params(two_process_run)
  step_b, b = _params(wd)
  assert step_a == step_b == STEPS
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
