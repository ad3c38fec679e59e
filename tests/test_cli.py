"""The command line as a person uses it: clear errors, SIGTERM saves and exits 0, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "--config=experiments/configs/rica_yfcc.py:tiny"


def run_cli(*args, timeout=240, env=None):
  e = dict(os.environ)
  e.pop("XLA_FLAGS", None)  # a plain one-device process, as a user would start it
  e.update(env or {})
  return subprocess.run(
    [sys.executable, "-m", "experiments.rica_yfcc", *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=timeout,
    env=e,
  )


TWO_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


@pytest.mark.parametrize(
  "flags, env, expected",
  [
    (["--config.num_stepz=3"], None, "unknown config key 'num_stepz'; did you mean num_steps?"),
    (
      ["--config.model.layers.layer1.field=40"],
      None,
      "layer1: receptive field 40x40 is larger than its input 16x16x3",
    ),
    (
      ["--config.batch_size=15", "--config.data.block_size=30", "--config.mesh=data:2"],
      TWO_DEVICES,
      "batch_size=15 is not divisible by the mesh's data axis (2)",
    ),
    (["--config.mesh=data:3,model:1"], None, "3x1 = 3 devices, but 1 are available"),
    (["--config.batch_size=0"], None, "batch_size must be >= 1, got 0"),  # issue #17
    (["--config.num_steps=-5"], None, "num_steps must be >= 1, got -5"),
    (
      ["--config.mesh=model:8", "--config.model.location_multiple=1"],
      {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"},
      "dimension 0 of size 36 is split over mesh axis 'model' of size 8",
    ),
  ],
)
def test_bad_flags_give_one_clear_line(flags, env, expected, tmp_path):
  r = run_cli(TINY, *flags, f"--workdir={tmp_path}", env=env)
  assert r.returncode == 2, r.stdout + r.stderr
  assert expected in r.stderr
  assert "Traceback" not in r.stderr
  assert len([ln for ln in r.stderr.splitlines() if ln.startswith("error:")]) == 1


def test_unwritable_workdir(tmp_path):
  ro = tmp_path / "ro"
  ro.mkdir()
  ro.chmod(0o500)
  if os.access(ro, os.W_OK):  # running as root: a file where a directory should be instead
    target = tmp_path / "file"
    target.write_text("x")
    wd = str(target / "run")
  else:
    wd = str(ro / "run")
  r = run_cli(TINY, f"--workdir={wd}")
  assert r.returncode == 2
  assert "is not writable" in r.stderr and "Traceback" not in r.stderr


def test_sigterm_saves_then_resume_finishes(tmp_path):
  wd = str(tmp_path)
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  p = subprocess.Popen(
    [
      sys.executable,
      "-m",
      "experiments.rica_yfcc",
      TINY,
      f"--workdir={wd}",
      "--config.num_steps=100000",
      "--config.log_every=1",
      "--config.checkpoint_every=100000",
    ],
    cwd=ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    env=env,
  )
  seen = []
  deadline = time.time() + 180
  for line in p.stdout:
    seen.append(line)
    if line.startswith("step") and "/100000" in line and int(line.split()[1].split("/")[0]) >= 3:
      p.send_signal(signal.SIGTERM)
      break
    assert time.time() < deadline, "".join(seen)
  out = p.communicate(timeout=120)[0]
  assert p.returncode == 0, "".join(seen) + out
  assert "received SIGTERM: saved checkpoint at step" in out
  steps = [int(d) for d in os.listdir(os.path.join(wd, "checkpoints")) if d.isdigit()]
  assert steps and max(steps) >= 3
  r = run_cli(TINY, f"--workdir={wd}", f"--config.num_steps={max(steps) + 2}")
  assert r.returncode == 0, r.stderr
  assert "resumed from" in r.stdout and f"step {max(steps) + 2}" in r.stdout


def test_bad_data_is_counted_in_metrics_and_summary(tmp_path):
  """Training on a YFCC100M-format file with broken, missing and non-image files and malformed
  lines: the run finishes, and the skipped items appear by reason in metrics.jsonl and at the end."""
  import json

  from livermore_brain.data import fixtures

  fx = fixtures.write_yfcc_fixture(str(tmp_path / "yfcc"))
  wd = tmp_path / "run"
  r = run_cli(
    TINY, f"--workdir={wd}", "--config.num_steps=5", "--config.tensorboard=false",
    f"--config.data.source=yfcc100m:{fx['metadata'][24]}",
    f"--config.data.image_dir={fx['image_dir']}",
  )  # fmt: skip
  assert r.returncode == 0, r.stderr[-3000:]
  last = json.loads((wd / "metrics.jsonl").read_text().splitlines()[-1])
  assert last["step"] == 5
  assert last["data/skipped/skipped_videos"] == 1 and last["data/skipped/malformed_line"] == 2
  # 5 steps x 16 slots = 80 slots over 12 photo items, 4 of them bad: every bad item is met (and
  # replaced) at least 6 times, each counted by its reason.
  for reason in ("decode_error", "empty_file", "not_image", "missing_file"):
    assert last[f"data/skipped/{reason}"] >= 6, last
  assert "data: skipped " in r.stdout and "1 skipped_videos; 2 malformed_line" in r.stdout
