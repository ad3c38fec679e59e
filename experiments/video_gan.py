r"""Train the video GAN with curriculum: ``python -m experiments.video_gan``.

With no flags it trains the ``cpu`` preset (clips of 8 frames at 32x32 of real MNIST digits
moving in 8 directions, offline; the ``progressive`` curriculum: the clip grows, then the
resolution) into ``runs/video_gan-cpu``; ``--config.curriculum=none`` trains the one-stage
control with the same code. Rerunning the same command resumes. ``samples.png``: fixed-latent
clips, one per row, frames side by side. See experiments/configs/video_gan.py.
"""

from __future__ import annotations

from experiments import common

main = common.define_train_flags(
  "video_gan", "Config file, optionally with a preset: experiments/configs/video_gan.py:tiny|cpu."
)

if __name__ == "__main__":
  common.run(main)
