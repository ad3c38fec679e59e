"""The transfer table's report: paired differences between rows and ``transfer.md``.

Pure functions over the JSON-able table `experiments.transfer` builds (see its docstring for the
schema); numpy only, no JAX, no family.
"""

from __future__ import annotations

import math

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
  return "\n".join(lines)
