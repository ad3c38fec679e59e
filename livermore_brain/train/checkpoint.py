"""Orbax checkpoints that are verified on restore.

Layout: ``<workdir>/checkpoints/<step>/{state,meta}`` managed by an ``ocp.CheckpointManager``
(async saves, keep-N). Orbax does not checksum, so every save stores, in ``meta``, a fingerprint of
every leaf: a wrap-around sum of a hash of its raw bits. Integer sums are exact and associative,
so the fingerprint is the same whatever the mesh or reduction order — a checkpoint saved on 8
devices verifies when restored onto 1. On restore we recompute it and check finiteness; a step
that fails (or cannot be read at all) is reported and the previous step is tried instead.

A training run restores with ``move_aside=True``: a broken step is renamed
``<step>.broken-<n>`` (kept for inspection, never deleted; Orbax no longer lists it), so the run
saves that step afresh instead of failing on "checkpoint for step N already exists" forever. In a
multi-process run every process agrees that a step is broken before anyone moves on (a read error
on one process counts for all), process 0 renames and the others wait for it.

A save that fails for lack of space (``ENOSPC``; TensorStore's ``RESOURCE_EXHAUSTED ... No space
left on device``), whether it surfaces at once or later from the asynchronous writer, becomes one
`DiskFullError` whose message says where, how much a checkpoint needs, which earlier steps are
intact and how to resume; Orbax's and asyncio's log records about it are silenced. Orbax writes
a step into a temporary directory and renames it only once complete, so earlier steps are safe.
In a multi-process run the disk may fill under one process only (a node-local disk, a quota):
its writes fail while the others wait for it in Orbax's barrier (20 minutes), so waiting for an
asynchronous save polls instead — the failed process posts its message in the coordination
service's key-value store and every process raises the same `DiskFullError`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import shutil
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

log = logging.getLogger(__name__)


def _leaf_fingerprint(x: jax.Array) -> jax.Array:
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype.itemsize == 4:
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
  elif x.dtype.itemsize == 8:
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)  # adds a trailing axis of 2
  else:
    bits = x.astype(jnp.uint32)
  # Element index from iotas (no reshape, so a sharded leaf is hashed where it lives).
  idx, stride = jnp.zeros(bits.shape, jnp.uint32), 1
  for d in reversed(range(bits.ndim)):
    idx = idx + jax.lax.broadcasted_iota(jnp.uint32, bits.shape, d) * jnp.uint32(stride % 2**32)
    stride *= bits.shape[d]
  h = (bits * jnp.uint32(0x9E3779B1)) ^ (bits >> 15) ^ (idx * jnp.uint32(0x85EBCA6B))
  return jnp.sum(h, dtype=jnp.uint32)


@jax.jit
def _verify(leaves: list[jax.Array]) -> tuple[jax.Array, jax.Array]:
  """Per-leaf fingerprints and one finiteness flag, in a single program.

  One program for the whole state (not one per leaf) so that, on a multi-device mesh, every device
  runs the same collectives in the same order.
  """
  fps = jnp.stack([_leaf_fingerprint(x) for x in leaves]) if leaves else jnp.zeros(0, jnp.uint32)
  finite = jnp.array(True)
  for x in leaves:
    if jnp.issubdtype(x.dtype, jnp.inexact):
      finite = finite & jnp.all(jnp.isfinite(x))
  return fps, finite


def verify(tree: Any) -> tuple[list[int], bool]:
  """(one uint32 per leaf — exact and mesh-independent, whether every float leaf is finite)."""
  fps, finite = jax.device_get(_verify(jax.tree.leaves(tree)))
  return [int(v) for v in fps], bool(finite)


def fingerprint(tree: Any) -> list[int]:
  return verify(tree)[0]


class CorruptCheckpointError(RuntimeError):
  pass


def _everyone(ok: bool) -> bool:
  """True iff ``ok`` holds on every process (a collective when there are several)."""
  if jax.process_count() == 1:
    return ok
  return bool(np.all(multihost_utils.process_allgather(np.array(ok, np.int32))))


class DiskFullError(RuntimeError):
  """A checkpoint could not be written for lack of space (the message is the one line to show)."""


_DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded", "os_error_code='28'")


def is_disk_full(e: BaseException | None) -> bool:
  """Whether ``e`` (or an exception it was raised from) is a full disk or an exceeded quota."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    if any(t in str(e) for t in _DISK_FULL_TEXT):
      return True
    e = e.__cause__ or e.__context__
  return False


class _QuietDiskFull(logging.Filter):
  """Drops the log records a failed asynchronous save leaves behind (Orbax's worker threads log
  every failure with its traceback, asyncio its orphaned futures): `DiskFullError` says it once.
  Once a disk-full record was seen, the follow-up noise of the dying event loops goes too."""

  _AFTERMATH = ("Event loop is closed", "exception was never retrieved", "Failed to run")

  def __init__(self):
    super().__init__()
    self.tripped = False

  def filter(self, record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    text = record.getMessage() if record.args else str(record.msg)
    if is_disk_full(exc) or any(t in text for t in _DISK_FULL_TEXT):
      self.tripped = True
      return False
    return not (self.tripped and any(t in text for t in self._AFTERMATH))


_QUIET = _QuietDiskFull()


def _late_callback(exc: BaseException | None) -> bool:
  """A TensorStore write finishing after its asyncio loop closed (a failed save's other writes)."""
  return isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"


def _quiet_unraisable(hook):
  def quiet(unraisable):
    if not (_QUIET.tripped and _late_callback(unraisable.exc_value)):
      hook(unraisable)

  quiet.livermore_brain = True
  return quiet


def _install_quiet_filter() -> None:
  for name in ("absl", "asyncio"):  # Orbax logs through absl; asyncio through its own logger
    logger = logging.getLogger(name)
    if _QUIET not in logger.filters:
      logger.addFilter(_QUIET)
  if not getattr(sys.unraisablehook, "livermore_brain", False):
    sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)


def _mb(n: float) -> str:
  return f"{n / 1e6:,.1f} MB" if n >= 1e5 else f"{n / 1e3:,.0f} kB"


def _dir_bytes(path: str) -> int:
  total = 0
  for root, _, files in os.walk(path):
    for f in files:
      with contextlib.suppress(OSError):
        total += os.path.getsize(os.path.join(root, f))
  return total


@functools.cache  # a global registration: once per process
def _small_arrays_written_whole() -> None:
  """One process: a replicated array under 1 MiB per replica is written whole by its first
  replica. Orbax's default (replica-parallel) cuts every replicated array into one slice per
  replica, compiling a slice program per array shape (~150 programs, ~6 s of CPU, at the first
  save of a tiny run on a 2x4 mesh) to split writes that all go through this one process anyway;
  large arrays keep the parallel write. Several processes keep Orbax's default, where each
  process writes its part."""
  if jax.process_count() == 1:
    from orbax.checkpoint._src.metadata import array_metadata_store

    handler = ocp.type_handlers.ArrayHandler(
      array_metadata_store=array_metadata_store.Store(),  # as Orbax's default handler has
      min_slice_bytes_for_replica_parallel=1 << 20,
    )
    ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)


class Checkpointer:
  """Save/restore a state pytree plus JSON metadata, verifying what comes back."""

  def __init__(self, directory: str, max_to_keep: int = 3, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    _small_arrays_written_whole()
    options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep,
      create=True,
      enable_async_checkpointing=async_save,
      cleanup_tmp_directories=True,
    )
    self.manager = ocp.CheckpointManager(
      self.directory, options=options, item_names=("state", "meta")
    )
    self._state_bytes = 0  # of the last state saved: what a checkpoint needs, at least
    self._failed: DiskFullError | None = None
    self._in_flight: int | None = None  # the step of the save not yet known to be complete
    _install_quiet_filter()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, meta: dict | None = None, force: bool = True) -> None:
    meta = dict(meta or {}, step=int(step), fingerprint=fingerprint(state))
    self.wait()  # the previous asynchronous save: its failure is reported as its own step's
    self._state_bytes = sum(int(x.nbytes) for x in jax.tree.leaves(state))
    self._in_flight = int(step)
    with self._disk_full_is_one_error():
      self.manager.save(
        int(step),
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        force=force,
      )

  def wait(self) -> None:
    if self._failed is None:  # after a failed save, its error was raised once already
      with self._disk_full_is_one_error():
        if jax.process_count() > 1:
          self._wait_unless_a_process_is_full()
        self.manager.wait_until_finished()
      self._in_flight = None

  def _wait_unless_a_process_is_full(self, poll_s: float = 0.1) -> None:
    """Multi-process: wait for the save in flight, but give up with `DiskFullError` as soon as
    any process's writes failed for lack of space (this one: Orbax logged the failure, which
    `_QUIET` notes; another: its message in the key-value store). Orbax's own wait would block
    in a barrier the failed process never reaches."""
    from livermore_brain import distributed

    client, key = distributed.client(), f"livermore_brain/disk_full{self.directory}"
    while self.manager.is_saving_in_progress():
      if _QUIET.tripped:
        msg = self.disk_full_message(self._in_flight)
        client.key_value_set(key, f"{msg} (on process {jax.process_index()})", allow_overwrite=True)
        self._failed = DiskFullError(msg)
        raise self._failed
      try:
        peer = client.key_value_try_get(key)
      except Exception:  # noqa: BLE001 - NOT_FOUND: no process reported a full disk
        peer = None
      if peer:
        _QUIET.tripped = True  # this process's save thread fails next, at the barrier: quiet
        self._failed = DiskFullError(peer)
        raise self._failed
      time.sleep(poll_s)

  def close(self) -> None:
    self.wait()
    with contextlib.suppress(Exception) if self._failed else contextlib.nullcontext():
      self.manager.close()

  @contextlib.contextmanager
  def _disk_full_is_one_error(self):
    """Turns a lack-of-space failure of the save in flight into `DiskFullError` (raised once:
    later waits are quiet)."""
    try:
      yield
    except Exception as e:
      if not is_disk_full(e):
        raise
      self._failed = DiskFullError(self.disk_full_message(self._in_flight))
      raise self._failed from None

  def disk_full_message(self, step: int | None) -> str:
    """One line: where, how much space a checkpoint needs, what is intact, how to resume."""
    steps = sorted(int(d) for d in os.listdir(self.directory) if d.isdigit())
    need = max([self._state_bytes] + [_dir_bytes(os.path.join(self.directory, str(steps[-1])))])
    try:
      free = f", {_mb(shutil.disk_usage(self.directory).free)} free"
    except OSError:
      free = ""
    which = f"step {step} " if step is not None else ""
    if steps:
      intact = f"the earlier checkpoints (steps {', '.join(map(str, steps))}) are intact"
      resume = f"rerun the same command to resume from step {steps[-1]}"
    else:
      intact, resume = "no earlier checkpoint exists", "rerun the same command to start again"
    return (
      f"no space left on device: checkpoint {which}could not be written to {self.directory} (a "
      f"checkpoint needs about {_mb(need)}{free}); {intact}. Free some space (or lower "
      f"--config.keep_checkpoints) and {resume}"
    )

  def restore_step(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """Restore one step onto the shardings in ``abstract_state``; raise if it fails checks."""
    error = None
    try:
      out = self.manager.restore(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
        ),
      )
    except Exception as e:  # unreadable files, missing items, shape mismatch
      error = e
    # Verification below is a collective: every process must take the same branch.
    if not _everyone(error is None):
      if error is None:
        raise CorruptCheckpointError(f"step {step} could not be read on another process")
      raise CorruptCheckpointError(
        f"step {step} could not be read: {type(error).__name__}: "
        f"{str(error).splitlines()[0] if str(error) else ''}"
      ) from error
    state, meta = out["state"], dict(out["meta"])
    got, finite = verify(state)
    if not finite:
      raise CorruptCheckpointError(f"step {step} holds non-finite values")
    want = meta.get("fingerprint")
    if want is not None and got != list(want):
      raise CorruptCheckpointError(f"step {step} does not match its stored checksum")
    return state, meta

  def restore_latest_good(self, abstract_state: Any, move_aside: bool = False):
    """Newest step that restores and verifies (``(state, meta)``, or None); warns about broken
    ones and, with ``move_aside`` (training), renames them out of the way (`move_aside`)."""
    for step in reversed(self.all_steps()):
      try:
        return self.restore_step(step, abstract_state)
      except CorruptCheckpointError as e:
        msg = f"checkpoint {self.directory}/{step} is broken ({e})"
        if move_aside:
          msg += f"; moved to {self.move_aside(step)}"
        msg += "; trying the previous one"
        log.warning(msg)
        if jax.process_index() == 0:
          print(f"WARNING: {msg}", flush=True)
    return None

  def move_aside(self, step: int) -> str:
    """Rename step ``step`` to ``<step>.broken-<n>`` (first free n); returns the new path.

    Only process 0 renames (the directory is shared); the others wait for it, then every
    process re-reads the step list, so the step can be saved afresh.
    """
    src = os.path.join(self.directory, str(step))
    n = 1
    while os.path.exists(f"{src}.broken-{n}"):
      n += 1
    dest = f"{src}.broken-{n}"
    many = jax.process_count() > 1
    if many:  # every process has chosen the same name before it changes
      multihost_utils.sync_global_devices(f"livermore_brain_move_aside_{step}_name")
    if jax.process_index() == 0:
      os.rename(src, dest)
    if many:
      multihost_utils.sync_global_devices(f"livermore_brain_move_aside_{step}_done")
    self.manager.reload()
    return dest


def abstract_with_shardings(abstract: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs carrying the target shardings (what `restore_step` expects)."""
  return jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
  )


def to_numpy(tree: Any) -> Any:
  return jax.tree.map(np.asarray, jax.device_get(tree))
