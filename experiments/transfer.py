r"""Transfer error of a trained network (LDRD report Fig. 4): ``python -m experiments.transfer
--workdir=<run dir>``.

Features of the chosen layers (after LCN, optionally pooled; `eval.brain_features`) feed an
L2-regularized logistic-regression probe trained on N labeled examples (default N = 1,000 and
10,000, capped at what the data set holds); the table reports the error rate on the held-out test
set, next to two baselines computed the same way: ``raw_pixels`` (the images at the data set's
native size, e.g. 28x28x1 for MNIST) and ``random_network`` (the same architecture with random weights). Writes
``transfer.json`` (``{source: {label count: {error, n_train, n_test, l2, dim}}}``) and
``transfer.md`` into the run directory and prints the table.

`transfer` is importable (notebooks call it) and defines no flags; they exist only when run as a
program.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from livermore_brain.data import labeled
from livermore_brain.eval import brain_features as bfl
from livermore_brain.eval import linear_probe


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


def resolve_pool(shape, pool: int, max_features: int) -> int | None:
  """A layer's pooling grid: ``pool > 0`` as given, ``0`` none, ``-1`` auto: a map with more than
  ``max_features`` values is pooled 2x2 at a time (grid ``ceil(g / 2)``) until it fits."""
  h, w, k = shape
  if pool > 0:
    return None if pool >= max(h, w) else int(pool)
  g = max(h, w)
  while pool < 0 and g > 1 and g * g * k > max_features:
    g = math.ceil(g / 2)
  return None if g >= max(h, w) else g


def source_layers(bf, name: str) -> list[int]:
  """``"layer1+layer3"`` -> ``[0, 2]``."""
  return [bf.layer_index(part) for part in name.split("+")]


def transfer(workdir: str, config, log=print) -> dict:
  """The transfer table of the run in ``workdir`` (see the module docstring); returns it."""
  step = None if int(config.step) < 0 else int(config.step)
  bf = bfl.BrainFeatures.load(workdir, step=step)
  workdir = bf.workdir
  raw_train, raw_test, desc = labeled.labeled_sets(
    config.dataset,
    bf.spec.input_shape,
    seed=int(config.seed),
    train_limit=int(config.train_limit) or None,
    test_limit=int(config.test_limit) or None,
    data_dir=config.tfds_data_dir or None,
  )
  train, test = (labeled.at_input(d, bf.spec.input_shape) for d in (raw_train, raw_test))
  names = [s.name for s in bf.spec.layers]
  layers = [s for s in str(config.layers).replace(" ", "").split(",") if s] or names
  for src in layers:
    source_layers(bf, src)  # validates every name before any compute
  each = config.random_layer == "each"
  rand_src = layers[-1] if each or not config.random_layer else config.random_layer
  source_layers(bf, rand_src)
  pools = {
    i: resolve_pool(bf.spec.output_shape(i), int(config.pool), int(config.max_features))
    for i in range(len(names))
  }
  bs, mode = int(config.batch_size), config.pool_mode
  cache = {}

  def feats(net, i):
    key = (net.name, i)
    if key not in cache:
      cache[key] = tuple(
        net.features(d.images, i, pools[i], pool_mode=mode, batch_size=bs) for d in (train, test)
      )
    return cache[key]

  def combine(net, src):
    parts = [feats(net, i) for i in source_layers(bf, src)]
    return tuple(np.concatenate([p[j] for p in parts], axis=1) for j in (0, 1))

  flat = lambda d: d.images.reshape(d.images.shape[0], -1)
  seed = None if int(config.random_seed) < 0 else int(config.random_seed)
  sources = {"raw_pixels": (flat(raw_train), flat(raw_test))}
  rnd = bf.random_network(seed)
  sources["random_network"] = combine(rnd, rand_src)
  for src in layers[:-1] if each else []:
    sources[f"random_network:{src}"] = combine(rnd, src)
  for src in layers:
    sources[src] = combine(bf, src)
  log(f"transfer: {workdir}, step {bf.step}; {desc}")
  for name, (xtr, _) in sources.items():
    log(f"  {name}: {xtr.shape[1]} features")

  avail = len(train.labels)
  requested = parse_counts(config.label_counts, avail)
  used = list(dict.fromkeys(min(n, avail) for n in requested))
  table = linear_probe.transfer_table(
    sources,
    train.labels,
    test.labels,
    used,
    num_classes=len(train.class_names),
    seed=int(config.seed),
    l2=parse_l2(config.l2),
    max_iter=int(config.max_iter),
  )
  out = {
    name: {
      str(n): dict(row[str(min(n, avail))], dim=int(sources[name][0].shape[1])) for n in requested
    }
    for name, row in table.items()
  }
  pooled = ", ".join(
    f"{names[i]} {'pooled to ' + str(g) + 'x' + str(g) if g else 'not pooled'}"
    for i, g in pools.items()
  )
  counts = ", ".join(f"{n} requested -> {min(n, avail)} used" for n in requested)
  md = "\n".join(
    [
      f"# Transfer error, {os.path.basename(workdir)} (step {bf.step})",
      "",
      f"Linear probe (L2 logistic regression) test error. Data: {desc}.",
      f"Labels: {counts} (of {avail} available); test set: {len(test.labels)} images.",
      f"Network input {'x'.join(map(str, bf.spec.input_shape))}; features after LCN; {pooled} "
      f"({mode}). `random_network`: {rand_src} of the same architecture with random weights; `raw_pixels`: the images at their native size.",
      "",
      linear_probe.to_markdown(out, title="features"),
    ]
  )
  with open(os.path.join(workdir, "transfer.json"), "w") as f:
    json.dump(out, f, indent=2)
  with open(os.path.join(workdir, "transfer.md"), "w") as f:
    f.write(md)
  log(md)
  return out


if __name__ == "__main__":
  from experiments import common

  common.run_on_run_dir(
    os.path.join(os.path.dirname(__file__), "configs", "transfer.py"), "evaluate", transfer
  )
