"""Reading a finished (or running) run directory: its config and its verified checkpoint.

Used by analysis, transfer evaluation, notebooks and tests::

    run = run_dir.load("runs/rica_yfcc-cpu")          # newest good checkpoint, all devices
    run.spec, run.config, run.state.params, run.step
"""

from __future__ import annotations

import dataclasses
import json
import os

import ml_collections

from livermore_brain import sharding as shd
from livermore_brain.models import brain, presets
from livermore_brain.train import checkpoint as ckpt_lib
from livermore_brain.train import optim
from livermore_brain.train import state as state_lib


@dataclasses.dataclass
class Run:
  workdir: str
  config: ml_collections.ConfigDict
  spec: brain.NetworkSpec
  state: state_lib.TrainState
  step: int
  meta: dict


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"{workdir} is not a run directory (no config.json); train one with "
      f"python -m experiments.rica_yfcc --workdir={workdir}"
    )
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def load(workdir: str, step: int | None = None, mesh=None, devices=None) -> Run:
  """Config + verified state of ``workdir`` on ``mesh`` (default: every device on ``model``,
  so a model too big for one device still loads)."""
  workdir = os.path.abspath(workdir)
  config = load_config(workdir)
  spec = presets.spec_from_config(config.model)
  tx = optim.make_optimizer(config.optimizer)
  if mesh is None:
    mesh = shd.make_mesh("data:1,model:-1", devices)
  rules = shd.rules_from_config(config.get("rules"))
  shardings = state_lib.state_shardings(mesh, spec, tx, rules)
  ckdir = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckdir):
    raise FileNotFoundError(
      f"{workdir} has no checkpoints/ yet; train first with "
      f"python -m experiments.rica_yfcc --workdir={workdir}"
    )
  ckpt = ckpt_lib.Checkpointer(ckdir, async_save=False)
  try:
    if not ckpt.all_steps():
      raise FileNotFoundError(
        f"{ckdir} holds no checkpoint; train first with "
        f"python -m experiments.rica_yfcc --workdir={workdir}"
      )
    abstract = ckpt_lib.abstract_with_shardings(state_lib.abstract_state(spec, tx), shardings)
    if step is not None:
      state, meta = ckpt.restore_step(step, abstract)
    else:
      out = ckpt.restore_latest_good(abstract)
      if out is None:
        raise FileNotFoundError(f"no checkpoint in {ckdir} passed verification")
      state, meta = out
  finally:
    ckpt.close()
  return Run(workdir, config, spec, state, int(meta["step"]), meta)
