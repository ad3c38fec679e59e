"""The config fields every training experiment shares (read by the generic loop), whatever the
family: ``family``, ``preset``, ``seed``, ``mesh``, ``rules``, ``data``, ``optimizer``,
``tensorboard``, ``keep_checkpoints``, ``eval_every``, ``distributed``. A family's config file
starts from `base_config` and adds its own sections and presets."""

import ml_collections

from livermore_brain import data, sharding
from livermore_brain.train import optim


def check_preset(preset: str, presets, config_file: str) -> str:
  if preset not in presets:
    raise ValueError(
      f"unknown preset {preset!r}; choose one of {', '.join(presets)} "
      f"(e.g. --config=experiments/configs/{config_file}:tiny)"
    )
  return preset


def override(c: ml_collections.ConfigDict, fields: dict) -> ml_collections.ConfigDict:
  """Set dotted fields (``{"model.layers.layer1.lam": 0.5}``) the way ``--config.<field>=`` does
  on the command line, for notebooks and tests; returns ``c``."""
  for field, value in fields.items():
    node, *path, last = [c, *field.split(".")]
    for k in path:
      node = node[k]
    node[last] = value
  return c


def base_config(family: str, preset: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.family = family  # livermore_brain.families
  c.preset = preset
  c.data = data.default_config()
  c.optimizer = optim.default_config()
  c.seed = 0
  c.mesh = ""  # "data:A,model:B"; one of them may be -1; "" = every device on data
  c.rules = ml_collections.ConfigDict({k: v or "" for k, v in sharding.DEFAULT_RULES})
  c.tensorboard = True
  c.keep_checkpoints = 3
  c.eval_every = 0  # steps between the task's evaluations (0: only at the end)
  c.distributed = ml_collections.ConfigDict(
    dict(
      enabled="auto",
      coordinator_address="",
      num_processes=0,
      process_id=-1,
      heartbeat_timeout_s=100,
    )
  )
  return c
