"""Tagging and retrieval metrics as the JEC (Makadia et al. 2008) and TagProp (Guillaumin et al.
2009) papers report them.

Every image is annotated with its ``n`` highest-scoring tags (n = 5 in both papers). Then, per
tag ``t`` of the vocabulary: recall = (test images correctly annotated with t) / (test images
that carry t), precision = (correctly annotated) / (images annotated with t), 0 when t is never
predicted. P and R are the means over the tags present in the test set; N+ counts the tags with
non-zero recall; F1 = 2PR / (P + R) of those means. Search by word: for each tag, the test images
ranked by their score for it; average precision over the images that carry it; mAP is the mean
over the tags present.
"""

from __future__ import annotations

import numpy as np


def annotate(scores: np.ndarray, n: int) -> np.ndarray:
  """Boolean ``(N, T)``: each row's ``n`` highest scores (ties broken by the lower tag index)."""
  scores = np.asarray(scores, np.float64)
  n = min(int(n), scores.shape[1])
  top = np.argsort(-scores, axis=1, kind="stable")[:, :n]
  out = np.zeros(scores.shape, bool)
  np.put_along_axis(out, top, True, axis=1)
  return out


def per_tag(predicted: np.ndarray, truth: np.ndarray) -> dict:
  """Per-tag precision / recall over the tags with at least one test image, and their summary."""
  predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
  correct = (predicted & truth).sum(0)
  npred, nrel = predicted.sum(0), truth.sum(0)
  present = nrel > 0
  prec = np.where(npred > 0, correct / np.maximum(npred, 1), 0.0)[present]
  rec = (correct / np.maximum(nrel, 1))[present]
  p, r = (float(prec.mean()), float(rec.mean())) if present.any() else (0.0, 0.0)
  f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
  return dict(precision=p, recall=r, f1=f1, n_plus=int((rec > 0).sum()), tags=int(present.sum()))


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
  """AP of one ranking (higher score first; ties by index): the mean, over relevant items, of
  the precision at their rank. NaN when nothing is relevant."""
  relevant = np.asarray(relevant, bool)
  if not relevant.any():
    return float("nan")
  order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
  hits = relevant[order]
  ranks = np.flatnonzero(hits) + 1
  return float(np.mean(np.arange(1, len(ranks) + 1) / ranks))


def mean_average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
  """Search by word: mean over tags (columns) present in ``truth`` of the AP of ranking the
  images (rows) by that tag's score column."""
  aps = [average_precision(scores[:, t], truth[:, t]) for t in range(truth.shape[1])]
  aps = [a for a in aps if not np.isnan(a)]
  return float(np.mean(aps)) if aps else float("nan")


def tagging_metrics(scores: np.ndarray, truth: np.ndarray, n: int) -> dict:
  """`per_tag` at ``n`` tags per image plus the retrieval ``map``."""
  out = per_tag(annotate(scores, n), truth)
  out["map"] = mean_average_precision(scores, truth)
  return out
