"""Test-session setup: 8 fake CPU devices for sharded code, TensorFlow kept off the GPUs.

This file is imported by pytest before any test module, hence before JAX is imported, which is
what lets ``--xla_force_host_platform_device_count`` take effect. The CPU process settings the
entry points apply (`livermore_brain.cpu_tuning`) are applied here too, so tests run what users
run. Compiled programs are shared through JAX's persistent compilation cache in a fresh directory
per test session (the same tiny programs are compiled by many tests and by the subprocesses the
CLI, kill and multi-process tests start; a cached executable is the one a compile would give).
Nothing else is set globally: x64 stays *off* (golden tests compare float32 JAX against float64
numpy on purpose).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import warnings

_DEVICE_FLAG = "--xla_force_host_platform_device_count"
NUM_CPU_DEVICES = 8


def _add_xla_flag() -> None:
  flags = os.environ.get("XLA_FLAGS", "")
  if _DEVICE_FLAG in flags:  # respect an explicit choice from the caller
    return
  os.environ["XLA_FLAGS"] = f"{flags} {_DEVICE_FLAG}={NUM_CPU_DEVICES}".strip()
  if "jax" in sys.modules:  # a plugin imported JAX first: the backend may already be up
    warnings.warn(
      "jax was imported before tests/conftest.py set XLA_FLAGS; the fake-device count may not "
      "take effect",
      stacklevel=1,
    )


def _hide_gpus_from_tensorflow() -> None:
  """Keep tf.data (if some test imported TensorFlow) from grabbing GPU memory JAX needs.

  TensorFlow is never imported here (that alone costs seconds); only an already imported one is
  configured.
  """
  tf = sys.modules.get("tensorflow")
  if tf is None:
    return
  try:
    tf.config.set_visible_devices([], "GPU")
  except (RuntimeError, ValueError, AttributeError):  # already initialized, or a stub module
    pass


def _share_compiled_programs() -> None:
  """One compilation cache for this session: this process, the pytest-xdist workers it starts
  and every subprocess a test starts inherit the directory through the environment. A size limit
  turns on JAX's file lock, so concurrent processes never read a half-written entry."""
  if "JAX_COMPILATION_CACHE_DIR" in os.environ:  # the caller's (or the xdist controller's) choice
    return
  cache = tempfile.mkdtemp(prefix="livermore-brain-tests-jax-cache-")
  atexit.register(shutil.rmtree, cache, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = cache
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(4 << 30)


_add_xla_flag()
_share_compiled_programs()
_hide_gpus_from_tensorflow()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from livermore_brain import cpu_tuning  # noqa: E402 - after XLA_FLAGS, before JAX starts

cpu_tuning.apply()


def pytest_collection_finish():
  """Test modules are imported now; hide GPUs from a TensorFlow one of them imported."""
  _hide_gpus_from_tensorflow()


# The files that take minutes of CPU, longest first (measured on 2 cores, CPU seconds: the
# kill-in-a-save subprocesses ~450, the notebooks ~250, ...). `--dist loadfile` hands out whole
# files in collection order; started first, they run while the short files fill the other
# worker, instead of one of them starting last and leaving a worker idle for minutes.
LONGEST_FIRST = (
  "test_reliability.py",
  "test_notebooks.py",
  "test_context.py",
  "test_supervised.py",
  "test_multiprocess.py",
  "test_gan.py",
  "test_cli.py",
  "test_train.py",
  "test_analyze.py",
  "test_benchmark.py",
  "test_image2vec.py",
  "test_planner.py",
)


def pytest_configure(config):
  """Keep the order below: pytest-xdist would otherwise sort the files by their number of tests
  (most first), which puts the few-test, long-running files above at the end."""
  if hasattr(config.option, "loadscopereorder"):
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(os.path.basename(str(item.path)), len(rank)))  # stable
