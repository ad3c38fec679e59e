r"""Train the RICA brain: ``python -m experiments.rica_yfcc [--config=...:<preset>] [--workdir=...]``.

With no flags it trains the ``cpu`` preset on the photographs that ship with scikit-image into
``runs/rica_yfcc-cpu`` (about 10 minutes on 2 CPU cores). Rerunning the same command resumes from
the newest good checkpoint. See experiments/configs/rica_yfcc.py for every option.
"""

from __future__ import annotations

import os
import sys

from absl import flags
from ml_collections import config_flags

from experiments import common

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  os.path.join(os.path.dirname(__file__), "configs", "rica_yfcc.py"),
  "Config file, optionally with a preset: experiments/configs/rica_yfcc.py:tiny|cpu|paper.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
  "workdir",
  None,
  "Run directory (checkpoints, metrics, figures). Default: runs/rica_yfcc-<preset>.",
)


def main(argv):
  if len(argv) > 1:
    raise ValueError(
      f"unexpected arguments {argv[1:]}; options are --config, --config.<key>=, --workdir"
    )
  config = _CONFIG.value
  from livermore_brain import distributed

  distributed.initialize(config.get("distributed"))
  from livermore_brain.train import loop

  workdir = _WORKDIR.value or os.path.join("runs", f"rica_yfcc-{config.preset}")
  try:
    summary = loop.train(config, workdir)
  except loop.NonFiniteLossError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  if distributed.is_main():
    wd = summary["workdir"]
    print(
      f"\ndone: step {summary['final_step']} ({summary['images_per_sec']:.1f} img/s). "
      f"Outputs in {wd}:\n"
      f"  checkpoints/        Orbax checkpoints (rerun the same command to resume)\n"
      f"  metrics.jsonl       one JSON object per log step; tensorboard/ for TensorBoard\n"
      f"  filters_layer1.png  first-layer filters\n"
      f"  config.json         the full config of this run\n"
      f"Next: python -m experiments.analyze --workdir={wd}",
      flush=True,
    )


if __name__ == "__main__":
  common.run(main)
