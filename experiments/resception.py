r"""Train a supervised convnet: ``python -m experiments.resception [--config=...:<preset>]``.

With no flags it trains ResCeption (the LDRD report's backbone; Mundhenk et al. 2016) on the
handwritten digits that ship with scikit-learn into ``runs/resception-cpu`` (a few minutes on 2
CPU cores), with held-out accuracy every 250 steps. ``--config.model.arch=inception|alexnet``
trains its twins. Rerunning the same command resumes. See experiments/configs/resception.py.
"""

from __future__ import annotations

from experiments import common

main = common.define_train_flags(
  "resception",
  "Config file, optionally with a preset: experiments/configs/resception.py:tiny|cpu|imagenet.",
)

if __name__ == "__main__":
  common.run(main)
