r"""Supervised ResCeption (Mundhenk et al. 2016; the LDRD report's backbone) and its twins —
presets ``tiny``, ``cpu``, ``imagenet``; ``--config.model.arch=resception|inception|alexnet``.

Launch (``cpu`` is the default: scikit-learn's 1,797 handwritten digits, which ship with the
package, at 32x32; a few minutes on 2 CPU cores; held-out accuracy on the digits test split)::

  python -m experiments.resception
  python -m experiments.resception --config.model.arch=inception --workdir=runs/inception-cpu
  python -m experiments.resception --config=experiments/configs/resception.py:tiny \
      --workdir=/tmp/rc-tiny
  python -m experiments.resception --config=experiments/configs/resception.py:imagenet \
      --workdir=/lustre/$USER/resception --config.mesh=data:-1,model:1   # TFDS imagenet2012

Every field below can be overridden with ``--config.<field>=<value>``.
"""

import ml_collections

from experiments.configs import base
from livermore_brain.models import convnets

PRESETS = ("tiny", "cpu", "imagenet")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = base.check_preset(arg or "cpu", PRESETS, "resception.py")
  c = base.base_config("supervised", preset)
  c.model = ml_collections.ConfigDict(convnets.PRESETS[preset])
  c.model.arch = "resception"  # or inception (no shortcuts), alexnet (the baseline)
  c.data.whiten = False
  c.optimizer.name = "adamw"
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "cosine"
  c.eval = ml_collections.ConfigDict(dict(source="", batch_size=256))
  if preset == "tiny":  # tests: 16x16 digits, seconds
    c.model.input_shape = (16, 16, 1)
    c.model.num_classes = 10
    c.data.source = "digits:train"
    c.eval.source = "digits:test"
    c.eval.batch_size = 64
    c.batch_size = 32
    c.num_steps = 40
    c.log_every = 10
    c.eval_every = 20
    c.checkpoint_every = 20
    c.optimizer.learning_rate = 1e-2
    c.optimizer.warmup_steps = 5
  elif preset == "cpu":  # the offline default: scikit-learn's handwritten digits at 32x32
    c.model.input_shape = (32, 32, 1)
    c.model.num_classes = 10
    c.data.source = "digits:train"
    c.eval.source = "digits:test"
    c.batch_size = 128
    c.num_steps = 400  # ~36 epochs of the 1,438 training digits; train accuracy is 100% by ~150
    c.log_every = 50
    c.eval_every = 100
    c.checkpoint_every = 200
    c.optimizer.learning_rate = 2e-3
    c.optimizer.warmup_steps = 50
  else:  # imagenet: TFDS imagenet2012 (prepared with internet), 224x224, the report's scale
    c.model.input_shape = (224, 224, 3)
    c.model.num_classes = 1000
    c.data.source = "tfds:imagenet2012:train"
    c.data.crop = "random"
    c.data.random_crop_min_scale = 0.35
    c.data.flip = True
    c.data.color_jitter = 0.4
    c.eval.source = "tfds:imagenet2012:validation"
    c.batch_size = 1024
    c.num_steps = 450_000
    c.log_every = 200
    c.eval_every = 10_000
    c.checkpoint_every = 5_000
    c.optimizer.name = "momentum"
    c.optimizer.learning_rate = 0.4
    c.optimizer.weight_decay = 0.0
    c.optimizer.warmup_steps = 5_000
    c.mesh = "data:-1,model:1"
  return c
