r"""Run N cooperating local processes of one command, as a multi-host job would.

  python -m experiments.launch --num_processes=2 --devices_per_process=4 -- \
      python -m experiments.rica_yfcc --config=experiments/configs/rica_yfcc.py:tiny \
      --workdir=/tmp/lb-2proc --config.mesh=data:2,model:4

Each process gets ``LB_COORDINATOR`` (``localhost:<free port>``), ``LB_NUM_PROCESSES`` and
``LB_PROCESS_ID``, which `livermore_brain.distributed.initialize` reads; without an accelerator
(``--platform=cpu``, the default when ``nvidia-smi`` finds no GPU) ``--devices_per_process`` CPU
devices are faked per process, with GPUs each process sees its own ``--devices_per_process``
of them (``CUDA_VISIBLE_DEVICES``). Output lines are streamed with a ``[p<i>] `` prefix.

Supervision: if any process exits non-zero (or dies on a signal), the others get SIGTERM, then
SIGKILL after ``--grace_s``, and the launcher exits with that process's status — it never waits
on the survivors' collectives (a dead peer would otherwise only be noticed after the coordination
service's heartbeat timeout). ``--timeout_s`` bounds the whole job (exit 124). For several hosts
use SLURM instead (docs/scale.md): ``distributed.initialize`` picks up ``srun`` by itself.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from absl import flags

from experiments import common

_NUM = flags.DEFINE_integer("num_processes", 2, "Processes to start.", lower_bound=1)
_DEVICES = flags.DEFINE_integer(
  "devices_per_process", 0, "Devices per process (CPU: faked; GPU: default all / N)."
)
_PLATFORM = flags.DEFINE_enum("platform", "auto", ["auto", "cpu", "gpu"], "auto: gpu if any.")
_PORT = flags.DEFINE_integer("port", 0, "Coordinator port on localhost (0: a free one).")
_GRACE = flags.DEFINE_float("grace_s", 5.0, "Seconds between SIGTERM and SIGKILL.")
_TIMEOUT = flags.DEFINE_float("timeout_s", 0.0, "Stop everything after this long (0: never).")

_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def gpu_count() -> int:
  """GPUs ``nvidia-smi -L`` lists (0 without a driver); JAX is not imported here."""
  exe = shutil.which("nvidia-smi")
  if exe is None:
    return 0
  try:
    out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20).stdout
  except (OSError, subprocess.SubprocessError):
    return 0
  return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def cuda_plugin() -> str | None:
  """The installed version of jax's CUDA plugin (``jax-cuda12-plugin`` or ``-cuda13-``), or
  None: without it JAX runs on the CPU even where GPUs are present (requirements-gpu.txt)."""
  from importlib import metadata

  for name in ("jax-cuda12-plugin", "jax-cuda13-plugin"):
    try:
      return f"{name} {metadata.version(name)}"
    except metadata.PackageNotFoundError:
      continue
  return None


def process_env(base: dict, i: int, n: int, coordinator: str, platform: str, k: int,
                gpus: int = 0) -> dict:  # fmt: skip
  """The environment of process ``i`` of ``n``."""
  env = dict(base)
  env.update(
    LB_COORDINATOR=coordinator, LB_NUM_PROCESSES=str(n), LB_PROCESS_ID=str(i), PYTHONUNBUFFERED="1"
  )
  if platform == "cpu":
    rest = re.sub(rf"{_DEVICE_FLAG}=\d+", "", env.get("XLA_FLAGS", "")).strip()
    env["XLA_FLAGS"] = f"{rest} {_DEVICE_FLAG}={max(k, 1)}".strip()
    env["JAX_PLATFORMS"] = "cpu"
  else:
    per = k or max(gpus // n, 1)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in range(i * per, (i + 1) * per))
  return env


class Job:
  """N supervised child processes with prefixed, streamed output."""

  def __init__(self, cmd: list[str], envs: list[dict], grace_s: float, out=None):
    self.out = out or sys.stdout
    self.grace_s = grace_s
    self._lock = threading.Lock()
    self.procs = []
    for env in envs:
      self.procs.append(
        subprocess.Popen(
          cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
          start_new_session=True,  # its own process group: stopping it stops its children too
        )
      )  # fmt: skip
    self._threads = [
      threading.Thread(target=self._pump, args=(i, p), daemon=True)
      for i, p in enumerate(self.procs)
    ]
    for t in self._threads:
      t.start()
    for i, p in enumerate(self.procs):
      self.say(f"started p{i} (pid {p.pid})")

  def say(self, msg: str) -> None:
    with self._lock:
      print(f"[launch] {msg}", file=self.out, flush=True)

  def _pump(self, i: int, p: subprocess.Popen) -> None:
    for raw in iter(p.stdout.readline, b""):
      line = raw.decode(errors="replace").rstrip("\n")
      with self._lock:
        print(f"[p{i}] {line}", file=self.out, flush=True)
    p.stdout.close()

  def _signal_all(self, sig) -> None:
    for p in self.procs:
      if p.poll() is None:
        try:
          os.killpg(p.pid, sig)
        except (ProcessLookupError, PermissionError):
          pass

  def stop(self) -> None:
    """SIGTERM every live process (group), SIGKILL what is left after the grace period."""
    self._signal_all(signal.SIGTERM)
    deadline = time.monotonic() + self.grace_s
    while time.monotonic() < deadline and any(p.poll() is None for p in self.procs):
      time.sleep(0.05)
    if any(p.poll() is None for p in self.procs):
      self.say(f"still running after {self.grace_s:g} s: SIGKILL")
      self._signal_all(signal.SIGKILL)
    for p in self.procs:
      p.wait()

  def wait(self, timeout_s: float = 0.0) -> int:
    """0 when every process succeeds; else the first failure's status (128 + signal if killed)."""
    start = time.monotonic()
    try:
      while True:
        codes = [p.poll() for p in self.procs]
        failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
        if failed:
          i, c = failed[0]
          why = f"killed by {signal.Signals(-c).name}" if c < 0 else f"exited with status {c}"
          self.say(f"p{i} {why}; stopping the others")
          self.stop()
          return 128 - c if c < 0 else c
        if all(c == 0 for c in codes):
          return 0
        if timeout_s and time.monotonic() - start > timeout_s:
          self.say(f"timeout after {timeout_s:g} s; stopping every process")
          self.stop()
          return 124
        time.sleep(0.05)
    except KeyboardInterrupt:
      self.say("interrupted; stopping every process")
      self.stop()
      return 130
    finally:
      for t in self._threads:
        t.join(timeout=2.0)


def main(argv):
  cmd = argv[1:]
  if not cmd:
    raise ValueError(
      "no command given; usage: python -m experiments.launch --num_processes=N "
      "[--devices_per_process=K] -- <command ...>"
    )
  n = _NUM.value
  platform = _PLATFORM.value
  gpus = 0
  if platform != "cpu":
    gpus = gpu_count()
    if platform == "auto":
      platform = "gpu" if gpus else "cpu"
  k = _DEVICES.value
  if platform == "gpu" and cuda_plugin() is None:
    raise ValueError(
      "--platform=gpu (or GPUs found) but jax's CUDA plugin is not installed, so JAX would run on "
      "the CPU: pip install -r requirements-gpu.txt (the CUDA plugin of the pinned jax)"
    )
  if platform == "gpu" and k and n * k > gpus:
    raise ValueError(f"{n} processes x {k} GPUs need {n * k} GPUs; this machine has {gpus}")
  coordinator = f"localhost:{_PORT.value or free_port()}"
  envs = [process_env(os.environ, i, n, coordinator, platform, k, gpus) for i in range(n)]
  print(
    f"[launch] {n} processes on {platform}" + (f", {k} device(s) each" if k else "")
    + f", coordinator {coordinator}: {' '.join(cmd)}",
    flush=True,
  )  # fmt: skip
  job = Job(cmd, envs, _GRACE.value)

  def on_term(signum, frame):  # the launcher itself is stopped: stop the job with it
    raise KeyboardInterrupt

  signal.signal(signal.SIGTERM, on_term)
  code = job.wait(_TIMEOUT.value)
  if code:
    job.say(f"job failed (exit {code})")
  sys.exit(code)


if __name__ == "__main__":
  common.run(main)
