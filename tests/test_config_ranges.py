"""Range checks of numeric config fields (issue #17): every field of every family's config (every
preset) has a real range and its defaults pass; values out of range are one clear line; a
family's own rules come first. The command-line cases (batch_size=0, num_steps=-5): test_cli."""

from __future__ import annotations

import glob
import importlib
import os
import re

import ml_collections
import pytest

from experiments.configs import base
from livermore_brain import families
from livermore_brain.train import config_ranges as cr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def family_configs():
  """(name, preset, config) of every training config in experiments/configs (one with a
  ``family``), every preset — so a new family's config is covered the day it lands."""
  out = []
  for path in sorted(glob.glob(os.path.join(ROOT, "experiments", "configs", "*.py"))):
    mod = importlib.import_module(f"experiments.configs.{os.path.basename(path)[:-3]}")
    if not hasattr(mod, "get_config"):
      continue
    try:
      default = mod.get_config()
    except Exception:  # noqa: BLE001 - not a training config
      continue
    if "family" not in default:
      continue
    with pytest.raises(ValueError) as e:  # base.check_preset lists the presets
      mod.get_config("no-such-preset")
    names = re.search(r"choose one of (.*?) \(", str(e.value)).group(1).split(", ")
    out += [(mod.__name__, p, mod.get_config(p)) for p in names]
  return out


CONFIGS = family_configs()


def test_both_families_and_their_presets_are_found():
  found = {(n.rsplit(".", 1)[1], p) for n, p, _ in CONFIGS}
  assert {("rica_yfcc", "tiny"), ("rica_yfcc", "paper"), ("resception", "imagenet")} <= found
  assert {c.family for _, _, c in CONFIGS} >= {"rica", "supervised"}


@pytest.mark.parametrize("name, preset, config", CONFIGS, ids=[f"{n}:{p}" for n, p, _ in CONFIGS])
def test_every_numeric_field_has_a_range_and_the_defaults_pass(name, preset, config):
  task_class = getattr(families.module(config.family), families.FAMILIES[config.family][1])
  extra = task_class.config_ranges
  fields = dict(cr.numeric_fields(config))
  assert {"batch_size", "num_steps", "optimizer.learning_rate", "data.block_size"} <= set(fields)
  only_finite = [p for p in fields if cr.rule_for(p, extra)[0] == "*"]
  assert not only_finite, f"give these fields a range in config_ranges.RULES: {only_finite}"
  cr.check(config, extra)


@pytest.mark.parametrize(
  "field, bad, good, message",
  [
    ("batch_size", 0, 1, "batch_size must be >= 1, got 0"),
    ("num_steps", -5, 1, "num_steps must be >= 1, got -5"),
    ("eval_every", -1, 0, "eval_every must be >= 0, got -1"),
    ("checkpoint_every", 0, 7, "checkpoint_every must be >= 1, got 0"),
    ("optimizer.learning_rate", 0.0, 1e-9, "optimizer.learning_rate must be > 0, got 0.0"),
    ("optimizer.learning_rate", float("nan"), 1.0, "must be > 0, got nan"),
    ("optimizer.b2", 1.0, 0.0, "optimizer.b2 must be in [0, 1), got 1.0"),
    ("data.random_crop_min_scale", 0.0, 1.0, "must be in (0, 1], got 0.0"),
    ("data.prefetch", -2, -1, "data.prefetch must be -1 or >= 0, got -2"),
    ("distributed.process_id", -2, -1, "distributed.process_id must be -1 or >= 0, got -2"),
    ("model.layers.layer1.field", -1, 0, "model.layers.layer1.field must be >= 0, got -1"),
    ("model.layers.layer2.eps", 0.0, 1e-8, "model.layers.layer2.eps must be > 0, got 0.0"),
  ],
)
def test_a_value_out_of_range_is_one_clear_line(field, bad, good, message):
  c = next(cfg for n, p, cfg in CONFIGS if n.endswith("rica_yfcc") and p == "tiny")
  c = base.override(ml_collections.ConfigDict(c.to_dict()), {field: bad})
  with pytest.raises(ValueError, match=re.escape(message)):
    families.make_task(c)  # refused before the task is built
  cr.check(base.override(c, {field: good}))


def test_a_family_rule_comes_first_and_new_names_fall_back_to_finite():
  c = ml_collections.ConfigDict(dict(model=dict(depth=0, width=3.0, dropout=0.5)))
  cr.check(c)  # no rule names depth or width: finite is enough
  with pytest.raises(ValueError, match=r"model.depth must be >= 2, got 0"):
    cr.check(c, {"model.depth": cr.Range(lo=2)})
  c.model.width = float("inf")
  with pytest.raises(ValueError, match=r"model.width must be finite, got inf"):
    cr.check(c)
  c.model.width, c.model.dropout = 3.0, 1.5  # the shared rule for any *dropout
  with pytest.raises(ValueError, match=r"model.dropout must be in \[0, 1\), got 1.5"):
    cr.check(c)
