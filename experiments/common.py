"""Shared plumbing for the thin experiment entry points: flag parsing with errors a person can
act on, and a ``main`` wrapper that turns library errors into one clear line."""

from __future__ import annotations

import difflib
import os
import re
import sys

from absl import app, flags
from absl import logging as absl_logging


def _config_keys(cfg, prefix="") -> list[str]:
  keys = []
  for k, v in cfg.items():
    full = f"{prefix}{k}"
    keys.append(full)
    if hasattr(v, "items"):
      keys.extend(_config_keys(v, full + "."))
  return keys


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing; a bad ``--config.key`` or config file becomes one clear line + exit 2."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # noqa: BLE001 - absl, ml_collections and config files raise anything
    msg = str(e)
    bad = _unknown_config_key(argv)
    if bad is not None:
      key, keys = bad
      close = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
      hint = f"; did you mean {', '.join(close)}?" if close else ""
      print(
        f"error: unknown config key '{key}'{hint} (see the config file for the valid keys)",
        file=sys.stderr,
      )
    else:
      first = msg.strip().splitlines()[-1] if msg.strip() else type(e).__name__
      first = re.sub(r"^(\w+Error: )+", "", first)
      print(f"error: {first}", file=sys.stderr)
    sys.exit(2)


def _unknown_config_key(argv: list[str]):
  """(key, valid keys) for the first ``--config.key`` not present in the loaded config."""
  try:
    cfg = flags.FLAGS["config"].value
  except Exception:
    cfg = None
  if cfg is None:
    try:  # the override failed before the config was stored: load the file ourselves
      from ml_collections.config_flags import config_flags

      path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
      if path is None:
        return None
      cfg = config_flags._LoadConfigModule("config", path.split(":")[0]).get_config(  # noqa: SLF001
        *([path.split(":", 1)[1]] if ":" in path else [])
      )
    except Exception:
      return None
  keys = _config_keys(cfg)
  for a in argv:
    m = re.match(r"--config\.([^=]+)", a)
    if m and m.group(1) not in keys:
      return m.group(1), keys
  return None


def run(main) -> None:
  """`absl.app.run` with clear flag errors, and ValueError/FileNotFoundError as one line."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

  def wrapped(argv):
    if not flags.FLAGS["verbosity"].present:  # Orbax logs every save at INFO; keep the console
      absl_logging.set_verbosity(absl_logging.WARNING)  # for progress lines (-v 0 brings it back)
    try:
      return main(argv)
    except (ValueError, FileNotFoundError, NotADirectoryError) as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)

  app.run(wrapped, flags_parser=parse_flags)


def define_train_flags(name: str, doc: str):
  """``--config`` (``experiments/configs/<name>.py[:preset]``) and ``--workdir`` of a training
  entry point; returns ``main`` for `run`."""
  from ml_collections import config_flags

  config = config_flags.DEFINE_config_file(
    "config",
    os.path.join(os.path.dirname(__file__), "configs", f"{name}.py"),
    doc,
    lock_config=True,
  )
  workdir = flags.DEFINE_string(
    "workdir",
    None,
    f"Run directory (checkpoints, metrics, figures). Default: runs/{name}-<preset>.",
  )

  def main(argv):
    if len(argv) > 1:
      raise ValueError(
        f"unexpected arguments {argv[1:]}; options are --config, --config.<key>=, --workdir"
      )
    train(config.value, workdir.value or os.path.join("runs", f"{name}-{config.value.preset}"))

  return main


def train(config, workdir: str) -> dict:
  """Initialize `jax.distributed` if asked, train the config's family, print where outputs are."""
  from livermore_brain import distributed

  distributed.initialize(config.get("distributed"))
  from livermore_brain import families
  from livermore_brain.train import checkpoint, loop

  try:
    summary = families.train(config, workdir)
  except loop.NonFiniteLossError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except checkpoint.DiskFullError as e:
    print(f"error: {e}", file=sys.stderr)
    distributed.exit_now(2)  # every process of the run gets this error (checkpoint.Checkpointer)
  except OSError as e:  # a full disk under a metrics file, a figure, config.json
    if not checkpoint.is_disk_full(e):
      raise
    print(
      f"error: no space left on device writing {e.filename or workdir}; the checkpoints in "
      f"{workdir}/checkpoints are intact: free some space and rerun the same command to resume",
      file=sys.stderr,
    )
    sys.exit(2)
  if distributed.is_main():
    wd = summary["workdir"]
    extra = (
      "  filters_layer1.png  first-layer filters\n"
      if config.get("family", "rica") == "rica"
      else ""
    )
    print(
      f"\ndone: step {summary['final_step']} ({summary['images_per_sec']:.1f} img/s). "
      f"Outputs in {wd}:\n"
      f"  checkpoints/        Orbax checkpoints (rerun the same command to resume)\n"
      f"  metrics.jsonl       one JSON object per log step; tensorboard/ for TensorBoard\n"
      f"{extra}"
      f"  config.json         the full config of this run\n"
      f"Next: python -m experiments.analyze --workdir={wd}\n"
      f"      python -m experiments.transfer --workdir={wd}",
      flush=True,
    )
  return summary


def run_on_run_dir(config_file: str, verb: str, fn) -> None:
  """Entry point of a tool that reads a trained run: ``--workdir=<run> [--config=<file>[:fast]]``;
  calls ``fn(workdir, config)``."""
  from ml_collections import config_flags

  rel = os.path.relpath(config_file, os.getcwd())
  config = config_flags.DEFINE_config_file(
    "config", config_file, f"Config: {rel}[:fast].", lock_config=True
  )
  workdir = flags.DEFINE_string("workdir", None, f"Run directory to {verb}.")

  def main(argv):
    if len(argv) > 1:
      raise ValueError(f"unexpected arguments {argv[1:]}; options are --config.<key>=, --workdir")
    if not workdir.value:
      raise ValueError("--workdir=<run directory> is required (a directory trained by rica_yfcc)")
    fn(workdir.value, config.value)

  run(main)
