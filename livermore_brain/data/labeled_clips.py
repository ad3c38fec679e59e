"""Labeled clip sets for transfer (`labeled.labeled_sets` with a clip shape ``(T, H, W, C)``).

* ``moving_mnist`` / ``moving_mnist:motion``: the ``moving_mnist:train`` / ``:test`` clips
  (`clip_sources.MovingDigitsSource`: disjoint real MNIST digits, 4,000 / 1,000), labeled by their
  motion direction (8 classes);
* ``moving_mnist:digit``: the same clips labeled by their digit (10 classes);
* ``video_folder:<dir>``: one clip per video (the middle one, native rate), labeled by its
  top-level subfolder, stratified split; unusable videos are left out and counted in the
  description.

Clips are float32 in [0, 1], ``(N, T, H, W, C)``, made at the network's frame size (no
resampling afterwards, unlike images).
"""

from __future__ import annotations

import numpy as np

from livermore_brain.data import clip_sources, images


def clip_sets(source: str, clip_shape, *, seed=0, test_fraction=0.2, train_limit=None,
              test_limit=None):  # fmt: skip
  """``(train, test, description)`` `labeled.Labeled` sets of clips of ``clip_shape``."""
  from livermore_brain.data.labeled import Labeled, split

  t, h, w, c = (int(v) for v in clip_shape)
  kind, _, arg = str(source).partition(":")
  if kind == "moving_mnist" and arg in ("", "motion", "digit"):
    out = []
    for part, limit in (("train", train_limit), ("test", test_limit)):
      src = clip_sources.MovingDigitsSource(part)
      n = src.num_items if not limit else min(int(limit), src.num_items)
      x = np.stack([src.clip(i, t, h, w, c) for i in range(n)]).astype(np.float32) / 255.0
      if arg == "digit":
        y, names = src.digits.labels[:n], src.digits.class_names
      else:
        y, names = src.direction[:n], src.class_names
      out.append(Labeled(x, np.asarray(y, np.int32), tuple(names)))
    what = f"moving_mnist clips, {arg or 'motion'} labels ({len(out[0].class_names)} classes)"
    tr, te = out
  elif kind == "video_folder" and arg:
    src = clip_sources.VideoFolderSource(arg)
    if src.class_names is None:
      raise ValueError(f"video_folder:{arg} has no class subfolders: no labels to transfer to")
    src.crop, src.cache = "center", None
    clips, labels, bad = [], [], {}
    for i in range(src.num_items):
      if src.label(i) < 0:
        continue
      try:
        clips.append(src.clip(i, t, h, w, c, 0.5))
        labels.append(src.label(i))
      except images.BadImage as e:
        bad[e.reason] = bad.get(e.reason, 0) + 1
    if not clips:
      raise ValueError(f"video_folder:{arg}: no usable video ({bad})")
    data = Labeled(np.stack(clips).astype(np.float32) / 255.0, np.array(labels, np.int32),
                   src.class_names)  # fmt: skip
    tr, te = split(data, test_fraction, seed)
    skipped = f"; skipped {sum(bad.values())} ({', '.join(f'{k}={v}' for k, v in bad.items())})"
    what = f"video folder {arg}" + (skipped if bad else "")
  else:
    raise ValueError(
      f"labeled clip source {source!r} is not understood; clip networks transfer to "
      f"moving_mnist[:motion|digit] or video_folder:<dir> (one subfolder per class)"
    )
  cut = lambda d, n: d if not n else Labeled(d.images[:n], d.labels[:n], d.class_names)
  tr, te = cut(tr, train_limit), cut(te, test_limit)
  size = "x".join(str(v) for v in tr.images.shape[1:])
  return tr, te, f"{what}: {len(tr.labels)} train / {len(te.labels)} test clips ({size})"
