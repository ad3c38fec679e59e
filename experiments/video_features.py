r"""Learn features from clips: ``python -m experiments.video_features``.

With no flags it trains the ``cpu`` preset — the predictive autoencoder on moving real MNIST
digits (offline) — into ``runs/video_features-cpu``; rerunning resumes. Beside the usual run
files it writes ``predictions.png`` (context, true and predicted frames of held-out clips) at
every checkpoint. ``:gan_cpu`` trains the video GAN with curriculum instead (as
``python -m experiments.video_gan``). See experiments/configs/video_features.py; transfer to motion classification:
``python -m experiments.transfer --workdir=runs/video_features-cpu --config.dataset=moving_mnist``.
"""

from __future__ import annotations

from experiments import common

main = common.define_train_flags(
  "video_features",
  "Config file, optionally with a preset: experiments/configs/video_features.py:"
  "tiny|cpu|ucf101 (predictive autoencoder) or gan_tiny|gan_cpu|gan_ucf101 (video GAN).",
)

if __name__ == "__main__":
  common.run(main)
