"""Le et al. 2012's controls for a "face neuron", measured honestly (held out as well as same-set).

A neuron's best single-threshold accuracy (`selectivity.best_threshold`) is the maximum over every
neuron and every threshold of accuracies measured on the very images the threshold was chosen
on: with thousands of neurons and a few hundred images it is biased upwards, and a probe that
pixels alone solve makes any network look selective. So beside the network's best neuron, Le et
al. report the best *single input pixel*, the best *linear filter* (a linear classifier trained
on the probe, its output thresholded like one neuron) and a random-weight network. This module
measures each of them two ways:

* ``same_set``: Le et al.'s number — neuron, threshold and polarity chosen on all probe images
  and accuracy counted on the same images;
* ``held_out``: two-fold — the probe split into two class-stratified halves (seeded); the best
  neuron (and for the linear filter, the classifier) and its threshold are chosen on one half,
  the accuracy is counted on the other; the two folds are averaged.

`control_table` runs any number of feature sources (``{"trained layer 3": F, "pixels": X, ...}``)
through both measurements, and adds the linear filter on the given ``linear_inputs`` (pixels).
"""

from __future__ import annotations

import numpy as np

from livermore_brain.eval import linear_probe
from livermore_brain.eval import selectivity as sel_lib


def halves(labels, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Two disjoint class-stratified halves of ``range(N)`` (seeded), each sorted."""
  y = np.asarray(labels).astype(bool).reshape(-1)
  rng = np.random.default_rng(seed)
  a, b = [], []
  for cls in (False, True):
    idx = np.flatnonzero(y == cls)
    idx = idx[rng.permutation(idx.size)]
    a.append(idx[: idx.size // 2])
    b.append(idx[idx.size // 2 :])
  return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))


def held_out_neuron(train_acts, train_y, test_acts, test_y) -> dict:
  """Best neuron and threshold chosen on ``train``; its accuracy on ``test``."""
  sel = sel_lib.best_threshold(train_acts, train_y)
  n = sel.best_neuron
  t = np.asarray(test_acts).reshape(len(test_y), -1)[:, n : n + 1]
  pred = sel_lib.predict(t, sel.threshold[n : n + 1], sel.polarity[n : n + 1])[:, 0]
  return {
    "neuron": int(n),
    "train_accuracy": float(sel.best_accuracy),
    "accuracy": float(np.mean(pred == np.asarray(test_y).astype(bool))),
  }


def neuron_control(acts, labels, seed: int = 0) -> dict:
  """``{"same_set", "held_out", "neuron", "folds"}`` for the best neuron of ``acts`` ``(N, M)``."""
  y = np.asarray(labels).astype(bool)
  acts = np.asarray(acts).reshape(y.size, -1)
  same = sel_lib.best_threshold(acts, y)
  a, b = halves(y, seed)
  folds = [held_out_neuron(acts[i], y[i], acts[j], y[j]) for i, j in ((a, b), (b, a))]
  return {
    "same_set": float(same.best_accuracy),
    "held_out": float(np.mean([f["accuracy"] for f in folds])),
    "neuron": int(same.best_neuron),
    "num_neurons": int(acts.shape[1]),
    "folds": folds,
  }


def linear_filter_output(train_x, train_y, x, l2: float = 1e-2, max_iter: int = 500) -> np.ndarray:
  """The best linear filter as one neuron: a logistic-regression probe (`linear_probe.fit`, two
  classes) trained on ``(train_x, train_y)``; returns its logit margin on ``x`` ``(N, 1)``."""
  y = np.asarray(train_y).astype(np.int32)
  model = linear_probe.fit(np.asarray(train_x), y, 2, l2=l2, max_iter=max_iter)
  z = linear_probe.logits(model, np.asarray(x))
  return (z[:, 1] - z[:, 0])[:, None]


def linear_filter_control(x, labels, seed: int = 0, l2: float = 1e-2, max_iter: int = 500) -> dict:
  """The linear filter, thresholded like a neuron: same-set (trained and thresholded on all
  images) and held out (trained and thresholded on one half, counted on the other)."""
  y = np.asarray(labels).astype(bool)
  x = np.asarray(x).reshape(y.size, -1)
  same = sel_lib.best_threshold(linear_filter_output(x, y, x, l2, max_iter), y)
  a, b = halves(y, seed)
  folds = []
  for i, j in ((a, b), (b, a)):
    out = linear_filter_output(x[i], y[i], x, l2, max_iter)
    folds.append(held_out_neuron(out[i], y[i], out[j], y[j]))
  return {
    "same_set": float(same.best_accuracy),
    "held_out": float(np.mean([f["accuracy"] for f in folds])),
    "num_neurons": 1,
    "folds": folds,
  }


def control_table(sources: dict, labels, linear_inputs=None, seed: int = 0, l2: float = 1e-2):
  """``{name: neuron_control}`` for every ``sources`` entry, plus ``"best linear filter"`` on
  ``linear_inputs`` (e.g. the probe's pixels) when given, and ``"chance"``."""
  out = {name: neuron_control(acts, labels, seed) for name, acts in sources.items()}
  if linear_inputs is not None:
    out["best linear filter (pixels)"] = linear_filter_control(linear_inputs, labels, seed, l2)
  out["chance"] = {"same_set": sel_lib.chance_rate(labels), "held_out": sel_lib.chance_rate(labels)}
  return out


def format_table(table: dict) -> str:
  """A markdown table: control, same-set accuracy, held-out accuracy, neurons."""
  rows = ["| control | same-set accuracy | held-out accuracy | neurons |", "|---|---|---|---|"]
  for name, r in table.items():
    m = r.get("num_neurons", "")
    rows.append(f"| {name} | {100 * r['same_set']:.1f}% | {100 * r['held_out']:.1f}% | {m} |")
  return "\n".join(rows)
