"""Multi-host helpers: process-local batches -> global `jax.Array`s, process info.

`initialize` wraps ``jax.distributed.initialize`` (see `experiments.launch` and the README's SLURM
example); it must run before any other JAX call in the process.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import NamedSharding


def initialize(cfg=None) -> bool:
  """Start ``jax.distributed`` when configured; returns True if this is a multi-process run.

  ``cfg`` fields (all optional): ``enabled`` ("auto" | True | False), ``coordinator_address``,
  ``num_processes``, ``process_id``, ``heartbeat_timeout_s``. Environment variables
  ``LB_COORDINATOR``, ``LB_NUM_PROCESSES``, ``LB_PROCESS_ID`` fill missing values (the launcher
  sets them). ``enabled="auto"`` starts it when those are present or under SLURM.
  """
  cfg = cfg or {}
  get = (lambda k, d=None: cfg.get(k, d)) if hasattr(cfg, "get") else (lambda k, d=None: d)
  addr = get("coordinator_address") or os.environ.get("LB_COORDINATOR")
  nproc = get("num_processes") or os.environ.get("LB_NUM_PROCESSES")
  pid = get("process_id")
  pid = pid if pid not in (None, -1) else os.environ.get("LB_PROCESS_ID")
  enabled = get("enabled", "auto")
  if enabled in (False, "false", "off"):
    return False
  under_slurm = "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1
  if enabled == "auto" and not (addr or under_slurm):
    return False
  kwargs = {}
  if addr:
    kwargs = dict(coordinator_address=addr, num_processes=int(nproc), process_id=int(pid))
  timeout = get("heartbeat_timeout_s")
  if timeout:
    kwargs["heartbeat_timeout_seconds"] = int(timeout)
  try:
    jax.distributed.initialize(**kwargs)
  except TypeError:  # older jax without heartbeat_timeout_seconds
    kwargs.pop("heartbeat_timeout_seconds", None)
    jax.distributed.initialize(**kwargs)
  return jax.process_count() > 1


def is_main() -> bool:
  return jax.process_index() == 0


def global_batch(local: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """This process's slice of the batch -> one global array split as ``sharding`` says."""
  global_shape = (local.shape[0] * jax.process_count(),) + tuple(local.shape[1:])
  return jax.make_array_from_process_local_data(sharding, local, global_shape)
