"""Optimizers from the config (``config.optimizer``), built with optax.

The unit-norm constraint on RICA filters is kept by projecting after each update
(`livermore_brain.layers.rica.project`, applied in the step), so any optax optimizer may be used.
"""

from __future__ import annotations

import ml_collections
import optax

OPTIMIZERS = ("adam", "adamw", "sgd", "momentum")
SCHEDULES = ("constant", "cosine")


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    dict(
      name="adam",
      learning_rate=3e-3,
      momentum=0.9,
      b1=0.9,
      b2=0.999,
      weight_decay=0.0,
      warmup_steps=0,
      schedule="constant",  # or "cosine": decay to 0 over the run's num_steps (after warmup)
      grad_clip=0.0,
    )
  )


def make_optimizer(
  cfg: ml_collections.ConfigDict, total_steps: int | None = None
) -> optax.GradientTransformation:
  """``adam`` | ``adamw`` | ``sgd`` | ``momentum`` with optional warmup, cosine decay over
  ``total_steps`` (``schedule="cosine"``) and global-norm clipping."""
  lr = cfg.learning_rate
  schedule = cfg.get("schedule", "constant")
  if schedule not in SCHEDULES:
    raise ValueError(f"unknown optimizer.schedule {schedule!r}; choose one of {SCHEDULES}")
  warmup = int(cfg.get("warmup_steps", 0))
  if schedule == "cosine":
    if not total_steps or total_steps <= warmup:
      raise ValueError(f"a cosine schedule needs num_steps > warmup_steps ({warmup})")
    lr = optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, warmup, int(total_steps))
  elif warmup:
    lr = optax.linear_schedule(0.0, cfg.learning_rate, warmup)
  name = cfg.name
  if name == "adam":
    tx = optax.adam(lr, b1=cfg.b1, b2=cfg.b2)
  elif name == "adamw":
    tx = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay)
  elif name == "sgd":
    tx = optax.sgd(lr)
  elif name == "momentum":
    tx = optax.sgd(lr, momentum=cfg.momentum, nesterov=True)
  else:
    raise ValueError(f"unknown optimizer {name!r}; choose one of adam, adamw, sgd, momentum")
  if cfg.get("grad_clip", 0.0):
    tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), tx)
  return tx


def opt_state_shardings(tx, abstract_opt_state, param_shardings, replicated):
  """Shardings of an optimizer state: every slot like the parameter it belongs to
  (``optax.tree_map_params``), counters and other non-parameter leaves ``replicated``."""
  return optax.tree_map_params(
    tx,
    lambda _, s: s,
    abstract_opt_state,
    param_shardings,
    transform_non_params=lambda _: replicated,
  )
