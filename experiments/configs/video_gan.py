r"""The video GAN with curriculum (family ``video_gan``, `livermore_brain.gan.video`) — presets
``tiny`` (tests), ``cpu`` (offline moving digits, minutes on 2 CPU cores), ``ucf101`` (TFDS, a
GPU); ``--config.curriculum=<preset or inline spec>``, ``none`` = the one-stage control.

The default curriculum, ``progressive`` (`gan.video.PRESETS`), grows the clip from a quarter
to its full length at a quarter of the resolution, then the resolution to half and full, each
growth faded in, with instance noise and blur annealed to zero.
"""

import ml_collections

from experiments.configs import base

PRESETS = ("tiny", "cpu", "ucf101")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = base.check_preset(arg or "cpu", PRESETS, "video_gan.py")
  c = base.base_config("video_gan", preset)
  c.model = ml_collections.ConfigDict(
    dict(
      clip_shape=(8, 32, 32, 1),  # frames, height, width, channels
      # the generator's up-blocks from the 2-frame 4x4 base: t doubles the frames, s the pixels
      # (levels 2x4, 2x8, 4x8, 8x8, 8x16, 8x32: frames x pixels); the discriminator mirrors it
      blocks="sttss",
      g_widths=(64, 64, 32, 32, 16, 8),  # channels per level
      d_widths=(64, 64, 32, 32, 16, 8),
      latent_dim=32,
      loss="nonsaturating",  # | hinge | lsgan
    )
  )
  c.curriculum = "progressive"
  c.curriculum_rule = ml_collections.ConfigDict(dict(band=0.1, patience=100, ema=0.98))
  c.optimizer.learning_rate = 2e-3  # the generator's; short games want fast players (gan.py)
  c.optimizer.b1 = 0.5
  c.d_optimizer = ml_collections.ConfigDict(c.optimizer.to_dict())
  c.d_optimizer.learning_rate = 1e-3
  c.data.normalize = False  # clips in [0, 1]; the networks map them to [-1, 1]
  c.data.whiten = False
  c.data.source = "moving_mnist:train"  # real MNIST digits moving in 8 directions (offline)
  if preset == "tiny":  # tests: 4 frames of 8x8, seconds
    c.model.clip_shape = (4, 8, 8, 1)
    c.model.blocks = "st"  # levels 2x4 -> 2x8 -> 4x8 (frames x pixels)
    c.model.g_widths = (16, 8, 8)
    c.model.d_widths = (16, 8, 8)
    c.model.latent_dim = 16
    # two games (two compiled steps): 2-frame clips, then the full 4 frames faded in
    c.curriculum = "steps=4,frames=full/2,noise=0.2>0.1,blur=1>0,smooth=0.1;fade=2,noise=0.1>0"
    c.curriculum_rule.patience = 3
    c.batch_size = 8
    c.num_steps = 8
    c.log_every = 2
    c.checkpoint_every = 4
  elif preset == "cpu":  # 8 frames of 16x16 (digits 8 px tall): sized for 2 shared CPU cores
    c.model.clip_shape = (8, 16, 16, 1)
    c.model.blocks = "ttss"  # levels 2x4 -> 4x4 -> 8x4 -> 8x8 -> 8x16
    c.model.g_widths = (16, 16, 16, 8, 8)
    c.model.d_widths = (16, 16, 16, 8, 8)
    c.batch_size = 16
    c.num_steps = 200
    c.log_every = 10
    c.checkpoint_every = 100
  else:  # ucf101: TFDS (prepared with internet), 16 frames of 64x64 RGB, for a GPU; not run
    c.model.clip_shape = (16, 64, 64, 3)
    c.model.blocks = "ssttss"  # 4x4, 4x8, 4x16, 8x16, 16x16, 16x32, 16x64
    c.model.g_widths = (512, 512, 256, 256, 256, 128, 64)
    c.model.d_widths = (512, 512, 256, 256, 256, 128, 64)
    c.model.latent_dim = 128
    c.data.source = "tfds:ucf101:train"
    c.data.video_fps = 5.0
    c.batch_size = 64
    c.num_steps = 50_000
    c.log_every = 100
    c.checkpoint_every = 5_000
    c.curriculum_rule.patience = 500
    c.mesh = "data:-1,model:1"
  return c
