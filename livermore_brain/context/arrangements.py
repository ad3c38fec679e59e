"""Patch arrangements of the context-prediction tasks, as data: which grid cells each class uses.

A task cuts ``K`` patches from a 3x3 grid laid over an image (cells ``(row, col)`` in
``{0, 1, 2}``, the centre is ``(1, 1)``); an `Arrangements` table lists, for each base class
``a``, the cell of every patch slot (``cells[a, k] = (row, col)``), and how many whole-image
rotations multiply the classes. The label of a sample is ``rotation * num_base + a``: arrangement
``a`` is cut from the (upright, possibly flipped) image, then every patch is turned by
``rotation * 90`` degrees. So the arrangement part of a label says where the patches lay in the
photograph, the rotation part which way they were turned (read from their content: which way is
up). Because every table here is closed under a quarter turn of the grid, these are exactly the
samples of a turned image cut at the turned cells, with the two labels relabelled one-to-one;
naming the arrangement in the upright frame is what lets a factored head (20-way arrangement,
4-way rotation, `context.task`) learn the arrangement from cues a turn leaves alone (sky looks
like sky either way up), where the turned frame's arrangement is readable only through the
rotation or through continuity across the gap. The towers see the slots in order: slot 0 is
always the centre, the anchor of Doersch et al.'s task.

* `PAIR` — Doersch, Gupta & Efros (ICCV 2015): the centre and one of its 8 neighbours, 8 classes,
  numbered in reading order (top-left, top, top-right, left, right, bottom-left, bottom,
  bottom-right); no rotations.
* `TRIPLE` — the LDRD report's three-patch task (released as LLNL/selfsupervised, Mundhenk, Ho &
  Chen, CVPR 2018, with 20 arrangements x 4 rotations = 80 classes). The release cuts its patches
  offline and does not list its 20 arrangements as data, so this set is our own, chosen with the
  same size and the report's motivation (two random patches are often both uninformative, "two
  patches of the sky"): the centre plus two neighbours that are never adjacent, so every triple
  spans at least two rows and two columns of the grid:

  - 8 straight lines through the centre (neighbours opposite each other, ring steps 4),
  - 8 bends (ring step 3: a corner and the far edge cell, or an edge cell and the far corner),
  - 4 corner pairs on one side of the grid (two corners, ring step 2, e.g. top-left + top-right),

  each with the slot order fixed (slot 1 is the first neighbour clockwise from the top-left
  as listed below), times the 4 rotations of the whole image: 80 classes. Flips need no
  relabelling here: patches are cut on the device after the image is flipped, so a flipped image
  just yields another sample of the same table.
"""

from __future__ import annotations

import dataclasses

import numpy as np

CENTRE = (1, 1)
# The 8 neighbours of the centre clockwise from the top-left corner (ring position 0..7).
RING = ((0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0))
# ... and in reading order (Doersch's numbering of the pair task).
READING = ((0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2))


@dataclasses.dataclass(frozen=True)
class Arrangements:
  name: str
  cells: np.ndarray  # (num_base, num_patches, 2) int: (row, col) of every slot, in {0, 1, 2}
  rotations: int  # 1 (none) or 4 (0, 90, 180, 270 degrees of the whole image)
  kinds: tuple[str, ...] = ()  # a short name per base arrangement (figures, docs)

  @property
  def num_base(self) -> int:
    return int(self.cells.shape[0])

  @property
  def num_patches(self) -> int:
    return int(self.cells.shape[1])

  @property
  def num_classes(self) -> int:
    return self.num_base * self.rotations

  def label(self, base, rotation):
    return rotation * self.num_base + base

  def split(self, label):
    """``label`` -> ``(base, rotation)``."""
    return label % self.num_base, label // self.num_base

  def turn_map(self) -> np.ndarray:
    """``(rotations, num_base)``: ``m[r, a]`` is the base arrangement whose cells, slot for slot,
    are those of ``a`` after ``r`` counter-clockwise quarter turns of the grid (``rot90``: cell
    ``(row, col)`` -> ``(2 - col, row)``) — how a sample cut at ``a`` of the photograph is named
    in the frame of the turned image. Needs the table closed under the turn."""
    index = {tuple(map(tuple, c)): a for a, c in enumerate(self.cells)}
    out = np.zeros((self.rotations, self.num_base), np.int32)
    for a, cells in enumerate(self.cells):
      c = cells
      for r in range(self.rotations):
        key = tuple(map(tuple, c))
        if key not in index:
          raise ValueError(f"table {self.name} is not closed under a quarter turn: {key}")
        out[r, a] = index[key]
        c = np.stack([2 - c[:, 1], c[:, 0]], -1)
    return out

  def describe(self, label: int) -> str:
    a, r = self.split(int(label))
    kind = self.kinds[a] if self.kinds else f"#{a}"
    return f"{kind}" + (f" rot{90 * r}" if self.rotations > 1 else "")


def _pair() -> Arrangements:
  cells = np.array([(CENTRE, n) for n in READING], np.int32)
  names = ("TL", "T", "TR", "L", "R", "BL", "B", "BR")
  return Arrangements("pair", cells, 1, names)


def _triple() -> Arrangements:
  names = ("TL", "T", "TR", "R", "BR", "B", "BL", "L")
  rows, kinds = [], []
  for step, kind, starts in (
    ("4", "line", range(8)),
    ("3", "bend", range(8)),
    ("2", "side", (0, 2, 4, 6)),
  ):
    for a in starts:
      b = (a + int(step)) % 8
      rows.append((CENTRE, RING[a], RING[b]))
      kinds.append(f"{kind} {names[a]}-{names[b]}")
  return Arrangements("triple", np.array(rows, np.int32), 4, tuple(kinds))


PAIR = _pair()
TRIPLE = _triple()
TABLES = {"pair": PAIR, "triple": TRIPLE}


def get(name: str) -> Arrangements:
  if name not in TABLES:
    raise ValueError(f"unknown arrangement {name!r}; choose one of {', '.join(TABLES)}")
  return TABLES[name]
