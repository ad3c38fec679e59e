"""Loading a RICA run directory: config, network spec and verified state.

run = rica.run.load("runs/rica_yfcc-cpu")          # newest good checkpoint, all devices
run.spec, run.config, run.state.params, run.step
"""

from __future__ import annotations

import dataclasses
import os

import ml_collections

from livermore_brain import sharding as shd
from livermore_brain.models import brain
from livermore_brain.rica import state as state_lib
from livermore_brain.rica.task import RicaTask
from livermore_brain.train import run_dir


@dataclasses.dataclass
class Run:
  workdir: str
  config: ml_collections.ConfigDict
  spec: brain.NetworkSpec
  state: state_lib.TrainState
  step: int
  meta: dict


def load(workdir: str, step: int | None = None, mesh=None, devices=None) -> Run:
  """Config + verified state of ``workdir`` on ``mesh`` (default: every device on ``model``,
  so a model too big for one device still loads)."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  config = run_dir.load_config(workdir)
  task = RicaTask(config)
  if mesh is None:
    mesh = shd.make_mesh("data:1,model:-1", devices)
  rules = shd.rules_from_config(config.get("rules"))
  state, meta = run_dir.restore(workdir, task, mesh, rules, step)
  return Run(workdir, config, task.spec, state, int(meta["step"]), meta)
