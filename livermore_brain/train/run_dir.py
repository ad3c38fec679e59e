"""Reading a run directory (finished or running) for any family: its config and a verified state.

    config = run_dir.load_config("runs/resception-cpu")
    state, meta = run_dir.restore(workdir, task, mesh, rules)   # newest checkpoint that verifies

`livermore_brain.families.load_features(workdir)` builds on this to give a feature extractor for
any run; each family's own loader (e.g. `livermore_brain.rica.run.load`) adds what it needs.
"""

from __future__ import annotations

import json
import os

import ml_collections

from livermore_brain.train import checkpoint as ckpt_lib


def load_config(workdir: str) -> ml_collections.ConfigDict:
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"run directory {workdir} does not exist")
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"{workdir} is not a run directory (no config.json); train one first, e.g. "
      f"python -m experiments.rica_yfcc --workdir={workdir}"
    )
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def restore(workdir: str, task, mesh, rules, step: int | None = None):
  """``(state, meta)``: the task's state from ``<workdir>/checkpoints`` on ``mesh`` — ``step``,
  or the newest checkpoint that passes verification."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  ckdir = os.path.join(workdir, "checkpoints")
  hint = f"train first, e.g. python -m experiments.<family> --workdir={workdir}"
  if not os.path.isdir(ckdir):
    raise FileNotFoundError(f"{workdir} has no checkpoints/ yet; {hint}")
  shardings = task.state_shardings(mesh, rules)
  ckpt = ckpt_lib.Checkpointer(ckdir, async_save=False)
  try:
    if not ckpt.all_steps():
      raise FileNotFoundError(f"{ckdir} holds no checkpoint; {hint}")
    abstract = ckpt_lib.abstract_with_shardings(task.abstract_state(), shardings)
    if step is not None:
      return ckpt.restore_step(step, abstract)
    out = ckpt.restore_latest_good(abstract)
    if out is None:
      raise FileNotFoundError(f"no checkpoint in {ckdir} passed verification")
    return out
  finally:
    ckpt.close()
