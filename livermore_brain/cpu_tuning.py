"""Process settings that make XLA:CPU run the training step faster, applied before JAX starts.

Both were found by profiling the ``cpu`` preset's step (2 Zen 5 cores, jaxlib 0.10.2; before and
after in docs/scale.md), and both are process-wide, so the *entry points* apply them
(``experiments/__init__.py``, ``tests/conftest.py``), never a library import:

1. **glibc malloc keeps freed memory.** XLA:CPU allocates each execution's temporary buffer
   (78.6 MB for the ``cpu`` step) with ``posix_memalign`` on a worker thread, whose glibc arena
   cannot grow past 64 MB, so glibc falls back to ``mmap``; the buffer is unmapped when the step
   ends and the next step page-faults all of it in again: 19,200 minor faults per step, 69 ->
   53 ms once they are gone. One arena (the main heap grows without that limit), no ``mmap``
   and no trimming make the freed buffer the next step's: ``mallopt(M_ARENA_MAX, 1)``,
   ``mallopt(M_MMAP_MAX, 0)``, ``mallopt(M_TRIM_THRESHOLD, 2**31 - 1)``. The cost: the process
   keeps its peak heap instead of returning freed memory to the system. Must run before other
   threads allocate (threads that already have an arena keep it).
2. **YNNPACK fuses elementwise ops.** By default XLA:CPU hands dots and reductions to YNNPACK
   but compiles elementwise ops as separate loop fusions; with
   ``--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_REDUCE``
   the bias add and residual of the decode, and the sparsity gradient, run inside the dots'
   fusions (53 -> 43 ms). The flag is experimental, and XLA aborts on a flag it does not know, so
   it is added only for the jaxlib series it was measured on (`TESTED_JAXLIB`), and never over a
   value already in ``XLA_FLAGS``.

``LB_CPU_TUNING=0`` in the environment turns both off (for comparisons, or another allocator).
Neither changes what is computed; the test suite runs with both applied.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import sys

ENV = "LB_CPU_TUNING"
TESTED_JAXLIB = ("0.10.",)
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
YNN_VALUE = "LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_REDUCE"

# glibc <malloc.h>
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8

_applied: list[str] | None = None


def _tune_malloc() -> bool:
  """One arena, no mmap, no trimming (glibc only); True when glibc accepted all three."""
  if not sys.platform.startswith("linux"):
    return False
  try:
    libc = ctypes.CDLL(None)
    libc.gnu_get_libc_version  # noqa: B018 - raises AttributeError on musl and others
  except (OSError, AttributeError):
    return False
  settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))
  return all(libc.mallopt(param, value) == 1 for param, value in settings)


def _jaxlib_version() -> str:
  try:
    return importlib.metadata.version("jaxlib")
  except importlib.metadata.PackageNotFoundError:
    return ""


def _add_ynn_flag(environ) -> bool:
  flags = environ.get("XLA_FLAGS", "")
  if YNN_FLAG in flags or not _jaxlib_version().startswith(TESTED_JAXLIB):
    return False
  environ["XLA_FLAGS"] = f"{flags} {YNN_FLAG}={YNN_VALUE}".strip()
  return True


def apply(environ=os.environ) -> list[str]:
  """Apply both settings once per process; returns what was applied (also `applied()`).

  Call before JAX creates its CPU backend (the XLA flag is read then) and before worker threads
  exist (for the allocator): at the top of an entry point, before importing JAX or TensorFlow.
  """
  global _applied
  if _applied is not None:
    return _applied
  _applied = []
  if environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
    return _applied
  if "jax" in sys.modules:
    from jax._src import xla_bridge  # noqa: PLC0415 - only to see whether it is too late

    if xla_bridge.backends_are_initialized():
      return _applied  # the flag would be ignored and threads already have their arenas
  if _tune_malloc():
    _applied.append("malloc: 1 arena, no mmap, no trim")
  if _add_ynn_flag(environ):
    _applied.append(f"xla: {YNN_FLAG}={YNN_VALUE}")
  return _applied


def applied() -> list[str]:
  """What `apply` did in this process ([] if it was not called, was disabled, or came too late)."""
  return list(_applied or [])
