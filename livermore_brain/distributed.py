"""Multi-host helpers: process-local batches -> global `jax.Array`s, process info.

`initialize` wraps ``jax.distributed.initialize`` (see `experiments.launch` and docs/scale.md's
SLURM example); it must run before any other JAX call in the process. In a multi-process run
process 0 writes metrics and figures (`is_main`), every process takes part in checkpoint saves
(Orbax writes each process's shards), and each process feeds its slice of the global batch
(`global_batch`).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import NamedSharding

_DETECTED = (  # environments jax.distributed.initialize() configures itself from
  ("SLURM_JOB_ID", "SLURM_NTASKS"),  # srun
  ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),  # mpirun (Open MPI)
)


def detected_cluster() -> str | None:
  """Name of a multi-process launcher JAX can configure itself from (SLURM, Open MPI), if any."""
  for marker, size in _DETECTED:
    if marker in os.environ and int(os.environ.get(size, "1") or 1) > 1:
      return marker.split("_")[0].lower()
  return None


def local_device_ids(value=None, env=None) -> list[int] | None:
  """Which local accelerators this process drives (``None``: JAX's default).

  ``value`` (or ``LB_LOCAL_DEVICE_IDS``): ``"0,1,2,3"``, or ``"all"``. Under SLURM, JAX gives each
  process only the GPU of its ``SLURM_LOCALID`` (one process per GPU); with one task per node
  (``--ntasks-per-node=1``) every visible GPU is taken instead, counted from
  ``CUDA_VISIBLE_DEVICES`` or ``SLURM_GPUS_ON_NODE``.
  """
  env = os.environ if env is None else env
  value = str(value or env.get("LB_LOCAL_DEVICE_IDS", "") or "").strip()
  if value and value != "all":
    return [int(v) for v in value.split(",") if v.strip()]
  one_per_node = "SLURM_JOB_ID" in env and (
    env.get("SLURM_NTASKS_PER_NODE") == "1"
    or (env.get("SLURM_NTASKS") and env.get("SLURM_NTASKS") == env.get("SLURM_NNODES"))
  )
  if value != "all" and not one_per_node:
    return None
  visible = env.get("CUDA_VISIBLE_DEVICES", "")
  count = len([v for v in visible.split(",") if v.strip()]) or int(env.get("SLURM_GPUS_ON_NODE", 0))
  if not count:
    if value == "all":
      raise ValueError(
        "distributed.local_device_ids='all' but the GPU count is unknown (set "
        "CUDA_VISIBLE_DEVICES or SLURM_GPUS_ON_NODE, or list the ids: 0,1,2,3)"
      )
    return None
  return list(range(count))


def initialize(cfg=None) -> bool:
  """Start ``jax.distributed`` when configured; returns True if this is a multi-process run.

  Must run before any other JAX call. ``cfg`` fields (all optional): ``enabled`` ("auto" | True |
  False), ``coordinator_address``, ``num_processes``, ``process_id``, ``heartbeat_timeout_s``
  (how long a dead peer goes unnoticed by the survivors), ``initialization_timeout_s``.
  Environment variables ``LB_COORDINATOR``, ``LB_NUM_PROCESSES``, ``LB_PROCESS_ID`` fill missing
  values (`experiments.launch` sets them). ``enabled="auto"`` (the default) starts it when an
  address is given or under a launcher JAX detects (SLURM ``srun`` / Open MPI with more than one
  task), where JAX finds the coordinator, process count and id by itself.
  """
  cfg = cfg or {}
  get = (lambda k, d=None: cfg.get(k, d)) if hasattr(cfg, "get") else (lambda k, d=None: d)
  enabled = get("enabled", "auto")
  if enabled in (False, "false", "False", "off", "0", 0):
    return False
  addr = get("coordinator_address") or os.environ.get("LB_COORDINATOR")
  nproc = get("num_processes") or os.environ.get("LB_NUM_PROCESSES")
  pid = get("process_id")
  pid = pid if pid not in (None, -1, "") else os.environ.get("LB_PROCESS_ID")
  cluster = detected_cluster()
  if enabled == "auto" and not (addr or cluster):
    return False
  kwargs = {}
  if addr:
    if not nproc or pid is None:
      raise ValueError(
        f"distributed: coordinator {addr} given but num_processes={nproc!r} / process_id={pid!r} "
        f"missing; set --config.distributed.num_processes and --config.distributed.process_id "
        f"(or LB_NUM_PROCESSES / LB_PROCESS_ID)"
      )
    kwargs = dict(coordinator_address=addr, num_processes=int(nproc), process_id=int(pid))
  elif not cluster:
    raise ValueError(
      "distributed.enabled is on but no coordinator is known: pass "
      "--config.distributed.coordinator_address=host:port (+ num_processes, process_id), run "
      "under srun / mpirun, or use python -m experiments.launch"
    )
  ids = local_device_ids(get("local_device_ids"))
  if ids is not None:
    kwargs["local_device_ids"] = ids
  timeout = get("heartbeat_timeout_s")
  if timeout:
    kwargs["heartbeat_timeout_seconds"] = int(timeout)
  init_timeout = get("initialization_timeout_s")
  if init_timeout:
    kwargs["initialization_timeout"] = int(init_timeout)
  try:
    jax.distributed.initialize(**kwargs)
  except TypeError:  # an older jax without the timeout arguments
    kwargs.pop("heartbeat_timeout_seconds", None)
    kwargs.pop("initialization_timeout", None)
    jax.distributed.initialize(**kwargs)
  if is_main():
    print(
      f"jax.distributed: {jax.process_count()} processes ({cluster or 'coordinator ' + addr}), "
      f"{jax.local_device_count()} local / {jax.device_count()} global devices",
      flush=True,
    )
  return jax.process_count() > 1


def is_main() -> bool:
  return jax.process_index() == 0


def client():
  """The coordination service client of a multi-process run (its key-value store), or None."""
  from jax._src import distributed as jax_distributed  # no public accessor in jax 0.10

  return jax_distributed.global_state.client if jax.process_count() > 1 else None


def exit_now(code: int) -> None:
  """Leave a multi-process run that every process is leaving with the same error (e.g. a full
  disk): flush, disconnect from the coordination service together (``jax.distributed.shutdown``
  is collective), and exit without joining background threads — Orbax's save threads may still
  be parked in a barrier that a failed peer never reaches, and Python would wait for them at
  exit until Orbax's 20-minute timeout. One process alone: a plain ``sys.exit``."""
  import sys

  if jax.process_count() == 1:
    sys.exit(code)
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    jax.distributed.shutdown()
  finally:
    os._exit(code)


def global_batch(local: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """This process's slice of the batch -> one global array split as ``sharding`` says."""
  global_shape = (local.shape[0] * jax.process_count(),) + tuple(local.shape[1:])
  return jax.make_array_from_process_local_data(sharding, local, global_shape)
