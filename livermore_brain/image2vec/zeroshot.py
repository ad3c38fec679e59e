"""Zero-shot tagging: tags held out of training, and ConSE (Norouzi et al. 2014).

`split` holds out tags; `training_rows` keeps only the training images that carry none of them,
so no held-out tag is ever seen with a training image (neither as a mapping target nor through
its image). At test time the held-out tags are scored for the test images that carry one.

ConSE needs no mapping training: a classifier's probabilities over the seen tags (here
TagProp's) weight the word vectors of each image's top ``T`` seen tags; the convex combination
is compared with the held-out tags' vectors by cosine. TagProp itself can only transfer tags
its neighbours carry, so it scores zero on held-out tags by construction.
"""

from __future__ import annotations

import numpy as np


def split(vocabulary, heldout) -> tuple[np.ndarray, np.ndarray]:
  """``(seen, unseen)`` column indices; ``heldout``: tag names (comma-separated or a list)."""
  names = [h.strip() for h in heldout.split(",")] if isinstance(heldout, str) else list(heldout)
  names = [h for h in names if h]
  missing = [h for h in names if h not in vocabulary]
  if missing:
    raise ValueError(f"held-out tags {missing} are not in the vocabulary {list(vocabulary)}")
  unseen = np.array(sorted(vocabulary.index(h) for h in names), np.int64)
  seen = np.array([i for i in range(len(vocabulary)) if i not in set(unseen)], np.int64)
  if not len(unseen) or not len(seen):
    raise ValueError("hold out at least one tag and keep at least one")
  return seen, unseen


def training_rows(tags: np.ndarray, unseen: np.ndarray) -> np.ndarray:
  """Boolean mask of the training images that carry no held-out tag."""
  return ~np.asarray(tags, bool)[:, unseen].any(1)


def conse(probs_seen, seen_vectors, unseen_vectors, top: int = 10) -> np.ndarray:
  """ConSE scores ``(N, U)``: cosine of each image's probability-weighted mean of its ``top``
  seen-tag unit vectors with each unseen tag's vector."""
  p = np.asarray(probs_seen, np.float64)
  s = _unit(np.asarray(seen_vectors, np.float64))
  u = _unit(np.asarray(unseen_vectors, np.float64))
  top = min(int(top), p.shape[1])
  cut = -np.sort(-p, axis=1)[:, top - 1 : top]
  w = np.where(p >= cut, p, 0.0)
  f = (w @ s) / np.maximum(w.sum(1, keepdims=True), 1e-12)
  return _unit(f) @ u.T


def zscore_columns(scores) -> np.ndarray:
  """Each tag's scores standardized over the test images (transductive hubness reduction: a
  held-out vector near the centre of the mapped images otherwise wins every image's top spot).
  Retrieval (a column's ranking) is unchanged; only the per-image annotation is."""
  s = np.asarray(scores, np.float64)
  return (s - s.mean(0)) / (s.std(0) + 1e-12)


def shifted_tags_control(scores, truth, n: int) -> dict:
  """Metrics with the held-out tags' score columns cyclically shifted (each of the ``U - 1``
  non-trivial shifts moves every tag's scores to another tag), averaged: the same scores with
  the word-to-tag correspondence broken. A method whose zero-shot result comes from the word
  space beats this control; one whose result is an artefact of the score statistics does not."""
  from livermore_brain.image2vec import metrics

  s = np.asarray(scores)
  runs = [metrics.tagging_metrics(np.roll(s, k, axis=1), truth, n) for k in range(1, s.shape[1])]
  return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}


def chance(n_images: int, n_tags: int, seed: int = 0) -> np.ndarray:
  """Random scores: the chance row."""
  return np.random.default_rng(seed).random((n_images, n_tags))


def _unit(x):
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
