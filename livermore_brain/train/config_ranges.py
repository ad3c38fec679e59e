"""Range checks for every numeric config field: a value out of range is one clear line
(``ValueError: batch_size must be >= 1, got 0``; the entry points print it and exit 2) before
anything is built, instead of a ``ZeroDivisionError`` deep in a family or a run that "trains"
-5 steps.

`RULES` maps a field's dotted path to its `Range` by glob pattern (`fnmatch`; the first pattern
that matches wins). The patterns are by *name*, so a new family's fields named like the shared
ones (``*batch_size``, ``*_every``, ``*.features``, ``*.stride``, ``*dropout``, ``*.eps``, ...)
are checked with no work; a family adds rules for its own names as ``Task.config_ranges`` (they
take precedence). A numeric field no rule names must at least be finite, and
tests/test_config_ranges.py fails for any numeric field of any family's config that only that
fallback covers — so every field gets a real range.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections.abc import Iterator, Mapping


@dataclasses.dataclass(frozen=True)
class Range:
  """``lo <= x <= hi`` (``<`` where ``*_open``), or one of ``also`` (e.g. -1 = automatic)."""

  lo: float | None = None
  hi: float | None = None
  lo_open: bool = False
  hi_open: bool = False
  also: tuple = ()

  def ok(self, x) -> bool:
    if x in self.also:
      return True
    if isinstance(x, float) and not math.isfinite(x):
      return False
    if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
      return False
    return not (self.hi is not None and (x >= self.hi if self.hi_open else x > self.hi))

  def describe(self) -> str:
    lo, hi = _fmt(self.lo), _fmt(self.hi)
    if self.lo is not None and self.hi is not None:
      text = f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
    elif self.lo is not None:
      text = f"{'>' if self.lo_open else '>='} {lo}"
    elif self.hi is not None:
      text = f"{'<' if self.hi_open else '<='} {hi}"
    else:
      text = "finite"
    return " or ".join([*map(_fmt, self.also), text])


def _fmt(v) -> str:
  return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


POSITIVE = Range(lo=1)  # counts, sizes, periods
NON_NEGATIVE = Range(lo=0)
ABOVE_ZERO = Range(lo=0, lo_open=True)  # rates, epsilons
FRACTION = Range(lo=0, hi=1, hi_open=True)  # probabilities, decay rates
FINITE = Range()

RULES: tuple[tuple[str, Range], ...] = (
  # the loop's own fields (experiments/configs/base.py)
  ("num_steps", POSITIVE),
  ("*batch_size", POSITIVE),
  ("eval_every", NON_NEGATIVE),  # 0: only at the end
  ("*_every", POSITIVE),  # log_every, checkpoint_every, pipeline.sync_every
  ("keep_checkpoints", POSITIVE),
  ("seed", NON_NEGATIVE),
  ("*optimizer.learning_rate", ABOVE_ZERO),
  ("*optimizer.b1", FRACTION),
  ("*optimizer.b2", FRACTION),
  ("*optimizer.momentum", FRACTION),
  ("*optimizer.weight_decay", NON_NEGATIVE),
  ("*optimizer.warmup_steps", NON_NEGATIVE),
  ("*optimizer.grad_clip", NON_NEGATIVE),  # 0: off
  ("distributed.num_processes", NON_NEGATIVE),  # 0: from the launcher
  ("distributed.process_id", Range(lo=0, also=(-1,))),  # -1: from the launcher
  ("distributed.*timeout_s", NON_NEGATIVE),  # 0: JAX's default
  # data (livermore_brain/data/config.py)
  ("data.block_size", POSITIVE),
  ("data.cache_max_mb", NON_NEGATIVE),
  ("data.color_jitter", FRACTION),
  ("data.random_crop_min_scale", Range(lo=0, hi=1, lo_open=True)),
  ("data.num_parallel_calls", Range(lo=1, also=(-1,))),  # -1: tf.data AUTOTUNE
  ("data.prefetch", Range(lo=0, also=(-1,))),
  ("data.whitening_images", POSITIVE),
  ("data.whitening_samples", POSITIVE),
  ("data.whitening_patch", POSITIVE),  # (and odd: data/config.py)
  ("data.video_fps", NON_NEGATIVE),  # 0: every decoded frame
  ("*eps", ABOVE_ZERO),  # data.normalize_eps, data.whitening_eps, RICA's smooth-L1 eps
  # models, by name, whatever the family
  ("*dropout", FRACTION),
  ("*.field", NON_NEGATIVE),  # RICA: 0 = dense
  ("*.lam", NON_NEGATIVE),
  ("*stride", POSITIVE),
  ("*kernel", POSITIVE),
  ("*features", POSITIVE),
  ("*lcn_size", POSITIVE),
  ("*pool_group", POSITIVE),  # RICA's optional L2 pooling: 1 = off
  ("*num_classes", POSITIVE),
  ("*image_size", POSITIVE),
  ("*channels", POSITIVE),
  ("*location_multiple", POSITIVE),
  ("pipeline.start_after_blocks", NON_NEGATIVE),
)


def numeric_fields(config, prefix: str = "") -> Iterator[tuple[str, float]]:
  """``(dotted path, value)`` of every int/float field (not bools) of a nested config."""
  for k, v in config.items():
    path = f"{prefix}{k}"
    if isinstance(v, Mapping) or hasattr(v, "items"):
      yield from numeric_fields(v, path + ".")
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
      yield path, v


def rule_for(path: str, extra: Mapping[str, Range] | None = None) -> tuple[str, Range]:
  """``(pattern, range)`` of the first rule matching ``path`` (``("*", FINITE)`` if none)."""
  for pattern, rng in (*(extra or {}).items(), *RULES):
    if fnmatch.fnmatchcase(path, pattern):
      return pattern, rng
  return "*", FINITE


def check(config, extra: Mapping[str, Range] | None = None) -> None:
  """Raise ``ValueError("<field> must be <range>, got <value>")`` for the first field out of
  range; ``extra`` (a family's ``Task.config_ranges``) comes before `RULES`."""
  for path, value in numeric_fields(config):
    _, rng = rule_for(path, extra)
    if not rng.ok(value):
      raise ValueError(f"{path} must be {rng.describe()}, got {value}")
