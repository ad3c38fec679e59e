r"""Train the RICA brain: ``python -m experiments.rica_yfcc [--config=...:<preset>] [--workdir=...]``.

With no flags it trains the ``cpu`` preset on the photographs that ship with scikit-image into
``runs/rica_yfcc-cpu`` (about 5 minutes on 2 CPU cores). Rerunning the same command resumes from
the newest good checkpoint. See experiments/configs/rica_yfcc.py for every option.
"""

from __future__ import annotations

from experiments import common

main = common.define_train_flags(
  "rica_yfcc",
  "Config file, optionally with a preset: experiments/configs/rica_yfcc.py:tiny|cpu|paper.",
)

if __name__ == "__main__":
  common.run(main)
