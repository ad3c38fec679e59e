r"""Train context prediction: ``python -m experiments.context_prediction [--config=...:<preset>]``.

With no flags it trains Doersch et al.'s pair task (8 neighbour positions) with a ResCeption
tower on the photographs that ship with scikit-image / scikit-learn into
``runs/context-pair-cpu``, with held-out arrangement accuracy every 200 steps;
``--config.arrangement=triple`` trains the LDRD report's three-patch task (80 classes) into
``runs/context-triple-cpu``. Rerunning the same command resumes. See
experiments/configs/context.py.
"""

from __future__ import annotations

import os

from absl import flags
from ml_collections import config_flags

from experiments import common

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  os.path.join(os.path.dirname(__file__), "configs", "context.py"),
  "Config file, optionally with a preset: experiments/configs/context.py:tiny|cpu|imagenet|yfcc.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Run directory. Default: runs/context-<arrangement>-<preset>."
)


def main(argv):
  if len(argv) > 1:
    raise ValueError(
      f"unexpected arguments {argv[1:]}; options are --config, --config.<key>=, --workdir"
    )
  c = _CONFIG.value
  common.train(c, _WORKDIR.value or os.path.join("runs", f"context-{c.arrangement}-{c.preset}"))


if __name__ == "__main__":
  common.run(main)
