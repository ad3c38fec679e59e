r"""Transfer error of trained networks, side by side (LDRD report Fig. 4): ``python -m
experiments.transfer --workdir=A [--workdir=B ...]`` (or ``--workdirs=A,B``).

Any run directory of any family (`livermore_brain.families.load_features`) becomes a feature
extractor; the table has one row per system and layer, in the report's Fig. 4 form::

    | features                                        | 1000 labels   | 10000 labels          |
    | raw pixels                                      | 12.1 ± 0.4%   | 8.3 ± 0.1% (n=4000)   |
    | rica_yfcc-cpu (rica): layer2 (trained)          | ...           | ...                   |
    | rica_yfcc-cpu (rica): layer2 (random init)      | ...           | ...                   |
    | resception-cpu (resception, supervised): pool (trained) | ...   | ...                   |
    | report: autoencoder (CIFAR-10 → MNIST)          | 7.23%         | 1.88%                 |

* **probe** (``--config.mode=probe``, the default): each layer's features (optionally pooled, see
  `resolve_pool`) feed an L2-regularized logistic-regression probe (`eval.linear_probe`) trained
  on N labeled examples (default N = 1,000 and 10,000, capped at what the data set holds: the cell
  then says ``(n=4000)``), tested on the held-out test set;
* **finetune** (``finetune`` or ``both``): the backbone is trained further with the N labels,
  under a linear softmax head (`eval.finetune`; rows ``(fine-tuned)``);
* every run's random-initialization twin (``fx.random_network()``), the same layers, the same way
  (rows ``(random init)``; with ``--config.random_twins=K`` the probe row is the mean of K random
  networks per label subset, seeds ``seed + 1 + 1000 j``: the expected error of random weights,
  not one draw's); ``raw pixels`` once (the images at the data set's native size, e.g.
  28x28x1 for MNIST); the report's own rows (``--config.reference``);
* every error is the mean ± sd (ddof=1) over ``probe_seeds`` label subsets (seeds ``seed``,
  ``seed + 1``, ...; each nested in N, `linear_probe.label_subset`), the same subsets for every
  row; the per-seed errors are kept in the JSON, and paired differences (trained vs random init,
  fine-tuned vs probe) are listed with whether they exceed the seed-to-seed noise.

Writes ``transfer.json`` and ``transfer.md`` into ``out_dir`` (default: the run directory when
there is one, else ``runs/transfer``) and prints the table. ``transfer.json``::

    {"dataset": str, "available_labels": int, "n_test": int, "mode": str,
     "label_counts": {requested: used}, "probe_seeds": [int], "out_dir": str,
     "runs": [{"workdir", "system", "train_seed", "seed_group" (str | null), "family", "arch",
               "step", "input_shape", "layers", "pools": {layer: grid | null}, "random_seed",
               "random_twins": [names]}],
     "rows": {label: {"kind": "raw_pixels" | "trained" | "random_init" | "reference",
                      "method": "probe" | "finetune" | "published", "system", "workdir",
                      "layer", "dim",
                      "cells": {requested: {"error" (mean), "sd", "errors" (per seed),
                                            "seeds", "n_train", "n_test", "twin_errors"
                                            (K > 1 twins: per twin, per seed), ...}}}},
     "differences": [{"a", "b", "labels", "mean", "sd", "seeds", "exceeds_noise"}],
     "over_seeds": {label: {"kind", "method", "group", "layer", "systems",
                            "cells": {requested: {"error", "sd", "errors" (per run), "n_train"}}}},
     "seed_differences": [{"a", "b", "labels", "runs", "per_run", "mean", "sd", "ratio",
                           "unpaired"}]}}

Runs whose configs differ only in ``seed`` (e.g. ``gan_compare``'s ``<arm>-s0``, ``<arm>-s1``)
form a group (`transfer_report.seed_groups`); ``over_seeds`` and the markdown's "Over training
seeds" table give each group's rows as mean ± sd over its runs of their per-run mean errors;
``seed_differences`` (`transfer_report.seed_differences`) each group's trained − random init over
the runs, paired (|mean| / sd) and unpaired.

`transfer` is importable (notebooks call it: ``transfer(workdir_or_list, config)``) and defines
no flags; they exist only when run as a program.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

import numpy as np

from experiments.configs.transfer import (  # noqa: F401 - the config's parsers, used here
  parse_counts,
  parse_l2,
  parse_layers,
  parse_workdirs,
  probe_seeds,
)
from livermore_brain import families
from livermore_brain.data import labeled
from livermore_brain.eval import finetune as finetune_lib
from livermore_brain.eval import linear_probe
from livermore_brain.eval.transfer_report import (  # noqa: F401
  differences,
  mean_of_twins,
  over_training_seeds,
  seed_differences,
  seed_groups,
  to_markdown,
)
from livermore_brain.train import run_dir

MODES = ("probe", "finetune", "both")

# The LDRD report's Fig. 4 (left): features learned on CIFAR-10 images, transferred to MNIST digit
# recognition, error rates with 1k / 10k labeled transfer training images. Published, not rerun.
REFERENCE = {
  "report: autoencoder (CIFAR-10 → MNIST)": {"1000": 0.0723, "10000": 0.0188},
  "report: GAN w/ curriculum (CIFAR-10 → MNIST)": {"1000": 0.0543, "10000": 0.0173},
}


# ---- parsing -----------------------------------------------------------------------------------
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


def with_readout(fx, config):
  """``fx`` read out as the config asks (RICA runs; other families keep theirs)."""
  kw = dict(
    readout=str(config.readout) or None,
    tap=str(config.tap) or None,
    group=int(config.group) or None,
    input_scale=float(config.input_scale) or None,
  )
  if not hasattr(fx, "with_readout"):
    return fx
  return fx.with_readout(**kw)


def readout_of(fx) -> str | None:
  """``"split, tap output, input scale 1.0"``-style summary of a RICA readout; None otherwise."""
  if not hasattr(fx, "with_readout"):
    return None
  out = f"{fx.readout}, tap {fx.tap}, input scale {fx.input_scale:g}"
  return out + (f", L2 groups of {fx.group}" if fx.group > 1 else "")


# ---- systems and layers ------------------------------------------------------------------------
def default_layers(fx) -> list[str]:
  """RICA: every exported layer; other families: the last three before ``logits``."""
  if fx.family == "rica":
    return list(fx.layers)
  return [n for n in fx.layers if n != "logits"][-3:]


def canonical_layer(fx, part: str, where: str, hint: str = "") -> str:
  """A layer name (or index) of ``fx`` -> its exported name; one clear error otherwise."""
  names = list(fx.layers)
  if part in names:
    return part
  if part.lstrip("-").isdigit() and -len(names) <= int(part) < len(names):
    return names[int(part)]
  raise ValueError(
    f"unknown layer {part!r} for {where} (a {fx.family} run); it exports {', '.join(names)}{hint}"
  )


def layers_for(fx, specs, where: str, several: bool) -> list[str]:
  """The feature sources of one run: the ``specs`` that apply to its family, else its default."""
  chosen = [src for fam, src in specs if fam in (None, fx.family)]
  hint = (
    "; --config.layers applies to every run, or to every run of one family with a prefix "
    "(e.g. rica:layer2,supervised:pool): choose layers each of them exports"
    if several
    else ""
  )
  out = ["+".join(canonical_layer(fx, p, where, hint) for p in src.split("+")) for src in chosen]
  return list(dict.fromkeys(out)) or default_layers(fx)


def system_names(fxs, workdirs) -> list[str]:
  """``rica_yfcc-cpu (rica)``, ``resception-cpu (resception, supervised)``; parent folders are
  added while two runs would share a name."""
  depth, names = 1, []
  while True:
    bases = [os.path.join(*os.path.normpath(w).split(os.sep)[-depth:]) for w in workdirs]
    if len(set(bases)) == len(bases) or depth > 8:
      break
    depth += 1
  for fx, base in zip(fxs, bases):
    arch = getattr(fx, "arch", None)
    tag = f"{arch}, {fx.family}" if arch else fx.family
    names.append(f"{base} ({tag})")
  return names


def _data_multiple(fx) -> int:
  mesh = getattr(fx, "mesh", None)
  try:
    return int(mesh.shape["data"]) if mesh is not None else 1
  except (KeyError, AttributeError, TypeError):
    return 1


# ---- the table ---------------------------------------------------------------------------------
def transfer(workdirs: str | Sequence[str], config, log=print, devices=None) -> dict:
  """The transfer table of the runs in ``workdirs`` (one directory or several; see the module
  docstring); writes it to ``out_dir`` and returns it. ``devices``: where the networks run
  (default: all, on each run's mesh)."""
  workdirs = parse_workdirs(workdirs)
  mode = str(config.mode)
  if mode not in MODES:
    raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
  seeds = probe_seeds(config)
  l2 = parse_l2(config.l2)
  specs = parse_layers(config.layers)
  step = None if int(config.step) < 0 else int(config.step)
  rseed = None if int(config.random_seed) < 0 else int(config.random_seed)
  n_twins = int(config.random_twins)
  if n_twins < 1:
    raise ValueError(f"random_twins must be >= 1, got {n_twins}")
  bs, pool_mode = int(config.batch_size), str(config.pool_mode)
  if pool_mode not in ("avg", "max", "l2"):
    raise ValueError(f"pool_mode must be avg, max or l2, got {pool_mode!r}")
  ft = config.finetune
  if mode != "probe" and str(ft.init_head) not in finetune_lib.INIT_HEADS:
    raise ValueError(
      f"finetune.init_head must be one of {', '.join(finetune_lib.INIT_HEADS)}, got "
      f"{ft.init_head!r}"
    )
  if mode != "probe" and any("+" in src for _, src in specs):
    raise ValueError("fine-tuning takes single layers; drop the 'a+b' sources or use mode=probe")
  configs = [run_dir.load_config(wd) for wd in workdirs]
  for c in configs:  # every one a run, before anything heavy loads
    families.family_of(c)

  # Systems: the extractors, their layers (validated before any compute) and pooling.
  fxs = []
  for wd in workdirs:
    log(f"transfer: loading {wd}")
    fxs.append(with_readout(families.load_features(wd, step=step, devices=devices), config))
  if len({len(fx.input_shape) for fx in fxs}) > 1:
    raise ValueError("one table holds image networks or clip networks, not both")
  clips = len(fxs[0].input_shape) == 4  # (T, H, W, C): networks over clips
  if clips and config.dataset == "mnist":
    raise ValueError(
      "these runs take clips: transfer them to a clip dataset, e.g. "
      "--config.dataset=moving_mnist (motion, 8 classes) or moving_mnist:digit"
    )
  names = system_names(fxs, workdirs)
  several = len(fxs) > 1
  layers = [layers_for(fx, specs, wd, several) for fx, wd in zip(fxs, workdirs)]
  pools = []
  for fx, srcs in zip(fxs, layers):
    parts = dict.fromkeys(p for src in srcs for p in src.split("+"))
    pools.append(
      {
        p: resolve_pool(fx.feature_shape(p), int(config.pool), int(config.max_features))
        for p in parts
      }
    )

  # Data: native-size images for raw pixels; each network's input size for its features.
  raw_train, raw_test, desc = labeled.labeled_sets(
    config.dataset,
    fxs[0].input_shape,
    seed=int(config.seed),
    train_limit=int(config.train_limit) or None,
    test_limit=int(config.test_limit) or None,
    data_dir=config.tfds_data_dir or None,
  )
  ytr, yte = raw_train.labels, raw_test.labels
  num_classes = len(raw_train.class_names)
  avail = len(ytr)
  requested = parse_counts(config.label_counts, avail)
  used = {str(n): min(n, avail) for n in requested}
  counts = list(dict.fromkeys(used.values()))
  log(f"transfer: {desc}; labels {', '.join(f'{r} -> {u}' for r, u in used.items())}")
  inputs = {}

  def at_input(shape):
    key = tuple(shape)
    if key not in inputs:
      inputs[key] = tuple(labeled.at_input(d, key).images for d in (raw_train, raw_test))
    return inputs[key]

  def by_request(table_row):
    return {r: table_row[str(u)] for r, u in used.items()}

  probe_kw = dict(num_classes=num_classes, seeds=seeds, l2=l2, max_iter=int(config.max_iter))

  def probe(label, xtr, xte):
    row = linear_probe.transfer_table({label: (xtr, xte)}, ytr, yte, counts, **probe_kw)[label]
    log(f"  {label}: " + ", ".join(f"{linear_probe.format_cell(c)}" for c in row.values()))
    return by_request(row)

  def finetune(label, params, fn, net, images):
    row = {}
    for n in counts:
      errs, steps = [], []
      for s in seeds:
        idx = linear_probe.label_subset(ytr, n, seed=s)
        res = finetune_lib.finetune(
          fn,
          params,
          images[0][idx],
          ytr[idx],
          images[1],
          yte,
          num_classes,
          seed=s,
          epochs=float(ft.epochs),
          max_steps=int(ft.max_steps),
          batch_size=int(ft.batch_size),
          learning_rate=float(ft.learning_rate),
          backbone_lr_scale=float(ft.backbone_lr_scale),
          l2=float(ft.l2),
          batch_multiple=_data_multiple(net),
          eval_batch_size=bs,
          init_head=str(ft.init_head),
          probe_max_iter=int(config.max_iter),
          pad_to=max(counts),
        )
        errs.append(res.error)
        steps.append(res.steps)
      row[str(n)] = linear_probe.cell(
        errs, seeds, n_train=int(idx.shape[0]), n_test=int(len(yte)), steps=steps
      )
    log(f"  {label}: " + ", ".join(f"{linear_probe.format_cell(c)}" for c in row.values()))
    return by_request(row)

  rows: dict[str, dict] = {}
  flat = lambda x: x.reshape(x.shape[0], -1)
  rows["raw pixels"] = dict(
    kind="raw_pixels",
    method="probe",
    system=None,
    workdir=None,
    layer=None,
    dim=int(flat(raw_train.images).shape[1]),
    cells=probe("raw pixels", flat(raw_train.images), flat(raw_test.images)),
  )
  runs = []
  for fx, wd, name, srcs, pool, rc in zip(fxs, workdirs, names, layers, pools, configs):
    rnd = fx.random_network(rseed)
    # More twins (probe rows): seeds the first one's + 1000 j, so no twin of one training seed is
    # another seed's twin (runs' twins stay independent across training seeds).
    first = int(rseed if rseed is not None else int(rc.get("seed", 0)) + 1)
    extra = [fx.random_network(first + 1000 * j) for j in range(1, n_twins)]
    images = at_input(fx.input_shape)
    runs.append(
      dict(
        workdir=wd,
        system=name,
        train_seed=int(rc.get("seed", -1)),
        family=fx.family,
        arch=getattr(fx, "arch", None),
        step=int(getattr(fx, "step", -1)),
        input_shape=list(fx.input_shape),
        layers=srcs,
        pools=pool,
        random_seed=rseed,
        random_network=rnd.name,
        random_twins=[rnd.name] + [r.name for r in extra],
        readout=readout_of(fx),
      )
    )
    cache = {}

    def feats(net, parts, cached=True, images=images, pool=pool, cache=cache):
      """``(train, test)`` features of the layer ``parts`` (concatenated over its "+" parts);
      per part kept in ``cache`` for this layer, except an extra twin's (``cached=False``: one
      twin's at a time in memory)."""
      per_part = []
      for p in parts:
        key = (id(net), p)
        got = cache.get(key) if cached else None
        if got is None:
          got = tuple(
            net.features(x, p, pool[p], pool_mode=pool_mode, batch_size=bs) for x in images
          )
          if cached:
            cache[key] = got
        per_part.append(got)
      return tuple(np.concatenate([q[j] for q in per_part], axis=1) for j in (0, 1))

    for src in srcs:
      parts = src.split("+")
      meta = dict(system=name, workdir=wd, layer=src)
      twins = ((fx, "trained", ""), (rnd, "random_init", "random init"))
      if mode in ("probe", "both"):
        for net, kind, tag in twins:
          xtr, xte = feats(net, parts)
          label = f"{name}: {src} ({tag or 'trained'})"
          cells = probe(label, xtr, xte)
          if kind == "random_init" and extra:
            cells = mean_of_twins(
              [cells] + [probe(f"{label} {r.name}", *feats(r, parts, cached=False)) for r in extra]
            )
          rows[label] = dict(kind=kind, method="probe", **meta, dim=int(xtr.shape[1]), cells=cells)
      cache.clear()  # features of the next layer are computed afresh; free these
      if mode in ("finetune", "both"):
        # fn depends on the architecture only (the extractor interface): both twins share it,
        # and so one compilation.
        _, fn = fx.trainable(src, pool[src], pool_mode)
        dim = int(np.prod(fx.feature_shape(src, pool[src])))
        for net, kind, tag in twins:
          label = f"{name}: {src} ({tag + ', ' if tag else ''}fine-tuned)"
          params, _ = net.trainable(src, pool[src], pool_mode)
          rows[label] = dict(
            kind=kind,
            method="finetune",
            **meta,
            dim=dim,
            cells=finetune(label, params, fn, net, images),
          )
  refs = {}
  if config.reference and not clips:  # the report's rows are image -> MNIST numbers
    for label, vals in REFERENCE.items():
      cells = {
        r: {"error": vals[r], "sd": None, "n_train": int(r), "source": "LDRD report, Fig. 4"}
        for r in used
        if r in vals
      }
      if cells:
        refs[label] = dict(
          kind="reference", method="published", system=None, workdir=None, layer=None, dim=None
        )
        refs[label]["cells"] = cells
  rows.update(refs)
  for r, group in zip(runs, seed_groups(runs, [c.to_dict() for c in configs])):
    r["seed_group"] = group

  diffs = differences(rows, list(used))
  out_dir = os.path.abspath(
    str(config.out_dir) or (workdirs[0] if len(workdirs) == 1 else os.path.join("runs", "transfer"))
  )
  out = {
    "dataset": desc,
    "available_labels": int(avail),
    "n_test": int(len(yte)),
    "mode": mode,
    "label_counts": used,
    "probe_seeds": seeds,
    "out_dir": out_dir,
    "runs": runs,
    "rows": rows,
    "differences": diffs,
    "over_seeds": over_training_seeds(rows, runs),
  }
  out["seed_differences"] = seed_differences(out["over_seeds"])
  md = to_markdown(out, config)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "transfer.json"), "w") as f:
    json.dump(out, f, indent=2, ensure_ascii=False)
  with open(os.path.join(out_dir, "transfer.md"), "w") as f:
    f.write(md)
  log(md)
  log(f"wrote {os.path.join(out_dir, 'transfer.json')} and transfer.md")
  return out


def main() -> None:
  from absl import flags
  from ml_collections import config_flags

  from experiments import common

  config_file = os.path.join(os.path.dirname(__file__), "configs", "transfer.py")
  config = config_flags.DEFINE_config_file(
    "config", config_file, "Config: experiments/configs/transfer.py[:fast].", lock_config=True
  )
  workdir = flags.DEFINE_multi_string(
    "workdir", [], "A run directory to evaluate; repeat it to compare several runs."
  )
  workdirs = flags.DEFINE_string("workdirs", "", "Comma-separated run directories (or --workdir).")

  def run(argv):
    if len(argv) > 1:
      raise ValueError(
        f"unexpected arguments {argv[1:]}; options are --config.<key>=, --workdir (repeatable), "
        "--workdirs=A,B"
      )
    dirs = list(workdir.value or []) + [d for d in workdirs.value.split(",") if d.strip()]
    if not dirs:
      raise ValueError(
        "--workdir=<run directory> is required (repeat it, or --workdirs=A,B, to compare runs)"
      )
    transfer(dirs, config.value)

  common.run(run)


if __name__ == "__main__":
  main()
