r"""Video features: feature learners on clips (the LDRD report's Fig. 4, right half) — presets
``tiny`` (tests, seconds), ``cpu`` (offline moving digits, ~10 min on 2 cores), ``ucf101``
(GPU: TFDS UCF-101 for users who prepared it, or ``--config.data.source=video_folder:<dir>``).

``config.family`` chooses the learner: ``video_predictive`` (the predictive autoencoder,
`livermore_brain.video`; presets ``tiny``, ``cpu``, ``ucf101``) or ``video_gan`` (the video GAN
with curriculum, `livermore_brain.gan.video`; presets ``gan_tiny``, ``gan_cpu``, ``gan_ucf101`` —
the same configs as experiments/configs/video_gan.py).

Launch::

  python -m experiments.video_features --config=experiments/configs/video_features.py:cpu
  python -m experiments.video_features --config=experiments/configs/video_features.py:gan_cpu \
      [--config.curriculum=none]
  python -m experiments.video_features --config=experiments/configs/video_features.py:tiny \
      --workdir=/tmp/vf-tiny
  python -m experiments.video_features --config=experiments/configs/video_features.py:ucf101 \
      --config.data.source=video_folder:/data/hmdb51 --config.data.video_fps=12.5
  python -m experiments.transfer --workdir=runs/video_features-cpu --config.dataset=moving_mnist

Data: ``data.source`` a clip source (`livermore_brain.data.clip_sources`): ``moving_mnist[:split]``,
``video_folder:<dir>``, ``tfds:<video dataset>``, ``yfcc100m:<file>`` (its video lines);
``data.video_fps`` the clip frame rate for video files (0 = native).
"""

import ml_collections

from experiments.configs import base, video_gan

PRESETS = ("tiny", "cpu", "ucf101") + tuple(f"gan_{p}" for p in video_gan.PRESETS)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = base.check_preset(arg or "cpu", PRESETS, "video_features.py")
  if preset.startswith("gan_"):
    return video_gan.get_config(preset[len("gan_") :])
  c = base.base_config("video_predictive", preset)
  c.model = ml_collections.ConfigDict(
    dict(
      frame_shape=(32, 32, 1),  # H, W, C of every frame
      context_frames=6,  # K: the encoder sees these
      predict_frames=4,  # P: the decoder predicts the next P
      widths=(32, 64),  # encoder blocks ((2+1)-D convs, each halves H and W)
      decoder_width=64,
    )
  )
  c.data.source = "moving_mnist:train"
  c.data.normalize = False  # clips in [0, 1]
  c.data.whiten = False
  c.data.crop = "resize"
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 2e-3
  c.eval = ml_collections.ConfigDict(dict(source="moving_mnist:test", num_clips=256))
  if preset == "tiny":  # tests: 16x16, 4 + 2 frames, seconds
    c.model.frame_shape = (16, 16, 1)
    c.model.context_frames = 4
    c.model.predict_frames = 2
    c.model.widths = (8, 16)
    c.model.decoder_width = 16
    c.eval.num_clips = 32
    c.batch_size = 8
    c.num_steps = 12
    c.log_every = 4
    c.checkpoint_every = 6
  elif preset == "cpu":  # offline moving digits, 32x32, 6 + 4 frames
    c.batch_size = 32
    c.num_steps = 3000
    c.log_every = 100
    c.eval_every = 1000
    c.checkpoint_every = 1000
  else:  # ucf101: GPU, TFDS UCF-101 (prepared), 64x64 RGB at 12.5 fps, 8 + 8 frames
    c.model.frame_shape = (64, 64, 3)
    c.model.context_frames = 8
    c.model.predict_frames = 8
    c.model.widths = (64, 128, 256)
    c.model.decoder_width = 256
    c.data.source = "tfds:ucf101:train"
    c.data.video_fps = 12.5
    c.data.crop = "center"
    c.eval.source = "tfds:ucf101:test"
    c.eval.num_clips = 512
    c.batch_size = 64
    c.num_steps = 100_000
    c.log_every = 100
    c.eval_every = 5000
    c.checkpoint_every = 2000
  return c
