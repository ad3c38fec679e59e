"""The transfer table's report: paired differences between rows and ``transfer.md``.

Pure functions over the JSON-able table `experiments.transfer` builds (see its docstring for the
schema); numpy only, no JAX, no family.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

from livermore_brain.eval import linear_probe


def paired_difference(a: dict, b: dict) -> dict | None:
  """``a - b`` error over the seeds both cells share, paired; None with no shared seed.

  ``exceeds_noise``: ``|mean| > 2 sd / sqrt(k)`` with k >= 2 paired seeds (sd with ddof=1);
  None when the differences do not vary (e.g. every seed probed all labels: nothing to judge by)."""
  eb = dict(zip(b.get("seeds", []), b.get("errors", [])))
  pairs = [(ea, eb[s]) for s, ea in zip(a.get("seeds", []), a.get("errors", [])) if s in eb]
  if not pairs:
    return None
  d = np.array([x - y for x, y in pairs], np.float64)
  mean, sd = linear_probe.summarize(d)
  k = d.size
  exceeds = None if not sd else bool(abs(mean) > 2 * sd / math.sqrt(k))
  return {"mean": mean, "sd": sd, "seeds": k, "exceeds_noise": exceeds}


def differences(rows: dict, cols: list[str]) -> list[dict]:
  """Trained vs random init, and fine-tuned vs the probe and vs fine-tuned random init, per layer
  and label count (rows of the same system and layer)."""
  pairs = []
  for label, row in rows.items():
    if row["kind"] != "trained":
      continue
    base = label.rsplit(" (", 1)[0]
    if row["method"] == "probe":
      pairs.append((label, f"{base} (random init)"))
    else:
      pairs += [(label, f"{base} (trained)"), (label, f"{base} (random init, fine-tuned)")]
  out = []
  for a, b in pairs:
    if b not in rows:
      continue
    for c in cols:
      ca, cb = rows[a]["cells"].get(c), rows[b]["cells"].get(c)
      if ca is None or cb is None:
        continue
      d = paired_difference(ca, cb)
      if d is not None:
        out.append({"a": a, "b": b, "labels": c, **d})
  return out


# A run directory's trailing training-seed tag: "none-s0", "rica_seed1", "run.s2".
SEED_TAG = re.compile(r"[-_.]?s(?:eed)?\d+$")


def seed_groups(runs: list[dict], configs: list[dict]) -> list[str | None]:
  """Per run, the name of its group of runs that differ only in the training seed (configs equal
  but for ``seed``, the same checkpoint step), None for a run without such a sibling.

  A group is named after its first run's system with a trailing seed tag dropped (``none-s0
  (gan)`` -> ``none (gan; seeds 0, 1)``); ``runs`` are `experiments.transfer`'s run entries
  (``system``, ``step``, ``train_seed``)."""
  keys = [
    json.dumps(
      [{k: v for k, v in c.items() if k != "seed"}, r["step"]], sort_keys=True, default=str
    )
    for r, c in zip(runs, configs)
  ]
  names: dict[str, str] = {}
  for r, k in zip(runs, keys):
    members = [m for m, mk in zip(runs, keys) if mk == k]
    if len(members) < 2 or k in names:
      continue
    base, tag = r["system"].rsplit(" (", 1) if " (" in r["system"] else (r["system"], ")")
    seeds = ", ".join(str(m["train_seed"]) for m in members)
    names[k] = f"{SEED_TAG.sub('', base) or base} ({tag[:-1]}; seeds {seeds})"
  return [names.get(k) for k in keys]


def over_training_seeds(rows: dict, runs: list[dict]) -> dict:
  """The rows of runs that differ only in their training seed (``run["seed_group"]``), averaged
  over those runs: per group, layer, kind and method, each cell's per-run mean error (over the
  label subsets) -> mean ± sd (ddof=1) over the runs.

  The sd here is the training-seed spread (the label-subset noise sits inside each run's mean);
  random-init rows average the runs' twins, whose seeds differ as the runs' do."""
  group_of = {r["system"]: r.get("seed_group") for r in runs}
  out: dict[str, dict] = {}
  for label, row in rows.items():
    group = group_of.get(row.get("system"))
    if group is None:
      continue
    key = f"{group}: {row['layer']} ({label.rsplit(' (', 1)[1]}"
    entry = out.setdefault(
      key,
      dict(kind=row["kind"], method=row["method"], group=group, layer=row["layer"], systems=[]),
    )
    entry["systems"].append(row["system"])
    for col, c in row["cells"].items():
      entry.setdefault("per_run", {}).setdefault(col, []).append(c)
  for entry in out.values():
    per_run = entry.pop("per_run", {})
    entry["cells"] = {}
    for col, cs in per_run.items():
      errs = [c["error"] for c in cs]
      mean, sd = linear_probe.summarize(errs)
      entry["cells"][col] = dict(error=mean, sd=sd, errors=errs, n_train=cs[0]["n_train"])
  return out


def mean_of_twins(cells: list[dict]) -> dict:
  """Several random twins' cells ``{count: cell}`` as one: per label subset the mean error over
  the twins (``twin_errors``: per twin, its errors), then mean ± sd over the subsets as usual."""
  out = {}
  for col, first in cells[0].items():
    per_twin = [c[col]["errors"] for c in cells]
    errs = np.mean(np.asarray(per_twin, np.float64), axis=0)
    extra = {k: v for k, v in first.items() if k not in ("error", "sd", "errors", "seeds", "l2")}
    out[col] = linear_probe.cell(
      errs, first["seeds"], **extra, twin_errors=[[float(e) for e in t] for t in per_twin]
    )
  return out


def seed_differences(over: dict) -> list[dict]:
  """Trained − random init over training seeds, per group, layer and label count (probe rows of
  `over_training_seeds`).

  ``paired``: per run, its trained error minus its own twin's (each the mean over the label
  subsets), then mean ± sd (ddof=1) over the runs, and ``ratio`` = |mean| / sd (the issue's "more
  than 3 sd over seeds" is ``ratio > 3``). ``unpaired``: the twins' mean minus the trained mean
  over sqrt(sd_trained² + sd_twin²), i.e. in sds of the difference between one trained and one
  random network drawn independently. None where fewer than 2 runs or no spread."""
  out = []
  for key, a in over.items():
    if a["kind"] != "trained" or a["method"] != "probe":
      continue
    b = over.get(key.rsplit(" (", 1)[0] + " (random init)")
    if b is None:
      continue
    for col, ca in a["cells"].items():
      cb = b["cells"].get(col)
      if cb is None:
        continue
      ea = dict(zip(a["systems"], ca["errors"]))
      pairs = [(ea[s], e) for s, e in zip(b["systems"], cb["errors"]) if s in ea]
      d = np.array([x - y for x, y in pairs], np.float64)
      mean, sd = linear_probe.summarize(d)
      spread = math.hypot(ca["sd"] or 0.0, cb["sd"] or 0.0)
      out.append(
        dict(
          a=key,
          b=key.rsplit(" (", 1)[0] + " (random init)",
          labels=col,
          runs=int(d.size),
          per_run=[float(v) for v in d],
          mean=mean,
          sd=sd,
          ratio=None if not sd else abs(mean) / sd,
          unpaired=None if not spread else (cb["error"] - ca["error"]) / spread,
        )
      )
  return out


def _describe_difference(d: dict) -> str:
  sd = "" if d["sd"] is None else f" ± {100 * d['sd']:.2f}"
  base, tag_a = d["a"].rsplit(" (", 1)
  tag_b = d["b"].rsplit(" (", 1)[1]
  verdict = {
    True: "exceeds the noise",
    False: "within the noise",
    None: "no seed-to-seed variation to judge it by",
  }[d["exceeds_noise"]]
  return (
    f"- {base}: ({tag_a} − ({tag_b}, {d['labels']} labels: "
    f"{100 * d['mean']:+.2f}{sd} points ({d['seeds']} paired seeds): {verdict}"
  )


def _describe_seed_difference(d: dict) -> str:
  sd = "" if d["sd"] is None else f" ± {100 * d['sd']:.2f}"
  ratio = "—" if d["ratio"] is None else f"{d['ratio']:.1f}"
  unpaired = "—" if d["unpaired"] is None else f"{d['unpaired']:.1f}"
  per = " / ".join(f"{100 * v:+.2f}" for v in d["per_run"])
  return (
    f"- {d['a'].rsplit(' (', 1)[0]}, {d['labels']} labels: paired {100 * d['mean']:+.2f}{sd} "
    f"points over {d['runs']} runs ({per}), |mean| / sd {ratio}; unpaired {unpaired} sd"
  )


def to_markdown(out: dict, config) -> str:
  """``transfer.md``: what was measured, the table, and the paired differences."""
  k = len(out["probe_seeds"])
  seeds = ", ".join(map(str, out["probe_seeds"]))
  avail = out["available_labels"]
  counts = ", ".join(
    f"{r} requested -> {u} used" + (" (all: the same images for every seed)" if u == avail else "")
    for r, u in out["label_counts"].items()
  )
  method = {
    "probe": "Linear probe (L2 logistic regression on frozen features)",
    "finetune": "Fine-tuning (backbone + linear softmax head, Adam)",
    "both": "Linear probe (L2 logistic regression on frozen features) and fine-tuning "
    "(backbone + linear softmax head, Adam)",
  }[out["mode"]]
  lines = [
    "# Transfer error (LDRD report Fig. 4 form)",
    "",
    f"{method}: test error, mean ± sd over {k} label subsets (seeds {seeds}; sd with ddof=1; "
    f"every row uses the same subsets). Data: {out['dataset']}.",
    f"Labels (of {avail} available): {counts}; test set: {out['n_test']} images. Rows "
    "(trained) / (random init) are linear probes.",
    "",
  ]
  for r in out["runs"]:
    pools = ", ".join(
      f"{p} {'pooled to ' + str(g) + 'x' + str(g) if g else 'not pooled'}"
      for p, g in r["pools"].items()
    )
    lines.append(
      f"- **{r['system']}**: {r['workdir']}, step {r['step']}, input "
      f"{'x'.join(map(str, r['input_shape']))}; {pools} ({config.pool_mode}); "
      + (f"readout {r['readout']}; " if r.get("readout") else "")
      + f"random init: {r['random_network']}."
    )
  lines.append("- **raw pixels**: the images at their native size.")
  if out["mode"] != "probe":
    f = config.finetune
    lines.append(
      f"- **fine-tuned**: Adam, head lr {f.learning_rate} (from "
      f"{'the linear probe' if f.init_head == 'probe' else 'zeros'}), backbone lr "
      f"x{f.backbone_lr_scale}, {f.epochs} epochs of batch {f.batch_size} (at most "
      f"{f.max_steps} steps), head l2 {f.l2}; convnets keep batch-norm statistics frozen."
    )
  if any(r["kind"] == "reference" for r in out["rows"].values()):
    lines.append(
      "- **report**: published numbers (features learned on CIFAR-10, transferred to MNIST; "
      "the report's test protocol), not rerun here."
    )
  table = {label: row["cells"] for label, row in out["rows"].items()}
  lines += ["", linear_probe.to_markdown(table, title="features")]
  if out["differences"]:
    lines += [
      "Paired differences (same label subsets; exceeds the noise when |mean| > 2 sd / √k):",
      "",
    ]
    lines += [_describe_difference(d) for d in out["differences"]]
    lines.append("")
  if out.get("over_seeds"):
    lines += [
      "## Over training seeds",
      "",
      "Runs that differ only in their training seed: each run's mean over the label subsets, "
      "then mean ± sd (ddof=1) over the runs (the training-seed spread).",
      "",
      linear_probe.to_markdown(
        {label: row["cells"] for label, row in out["over_seeds"].items()}, title="features"
      ),
    ]
    if out.get("seed_differences"):
      lines += [
        "Trained − random init over training seeds (paired: each run minus its own twin, then "
        "mean ± sd over the runs, |mean| / sd; unpaired: twins' mean − trained mean over "
        "√(sd_trained² + sd_twin²)):",
        "",
      ]
      lines += [_describe_seed_difference(d) for d in out["seed_differences"]]
      lines.append("")
  return "\n".join(lines)
