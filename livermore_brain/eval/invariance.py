"""Invariance curves of one neuron (Le et al. 2012, Fig. 4 / Fig. 6 style).

Le et al. showed their face neuron's response as a test face is scaled, shifted and rotated in
the image plane: a neuron that stays above its selectivity threshold over a range of each is
invariant to it. Here: positive probe images are transformed about their centre (edge values
extended, never zeros that a whitened network would read as structure), each transformed set is
passed through the neuron, and the mean (and spread) of the response is recorded per amount.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

DEFAULT_SCALES = (0.4, 0.55, 0.7, 0.85, 1.0, 1.15, 1.3, 1.45, 1.6)
DEFAULT_SHIFTS = (-0.3, -0.225, -0.15, -0.075, 0.0, 0.075, 0.15, 0.225, 0.3)  # frame fractions
DEFAULT_ANGLES = (-90, -67.5, -45, -22.5, 0, 22.5, 45, 67.5, 90)  # degrees


def transform(images: np.ndarray, scale=1.0, shift=(0.0, 0.0), angle=0.0) -> np.ndarray:
  """``(N, H, W, C)`` images zoomed by ``scale``, rotated by ``angle`` degrees (counter-clockwise
  as displayed) and shifted by ``shift = (dy, dx)`` pixels, all about the image centre, by
  bilinear resampling with edge extension. The identity returns the images unchanged."""
  x = np.asarray(images, np.float32)
  n, h, w, c = x.shape
  a = np.deg2rad(angle)
  # output (y, x) -> input: in = R(-a) (out - centre - shift) / scale + centre
  rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) / float(scale)
  centre = np.array([(h - 1) / 2, (w - 1) / 2])
  offset = centre - rot @ (centre + np.asarray(shift, np.float64))
  out = np.empty_like(x)
  for i in range(n):
    for ch in range(c):
      out[i, :, :, ch] = ndimage.affine_transform(
        x[i, :, :, ch], rot, offset=offset, order=1, mode="nearest"
      )
  return out


def curves(
  neuron: Callable[[np.ndarray], np.ndarray],
  images: np.ndarray,
  scales: Sequence[float] = DEFAULT_SCALES,
  shifts: Sequence[float] = DEFAULT_SHIFTS,
  angles: Sequence[float] = DEFAULT_ANGLES,
) -> dict:
  """Responses ``neuron(images) -> (N,)`` over each transform, one factor at a time.

  Returns ``{"scale"|"shift_x"|"shift_y"|"rotation": {"amount": [...], "mean": [...],
  "sd": [...]}}``; shifts are fractions of the frame (``shift * W`` pixels).
  """
  _, h, w, _ = np.shape(images)

  def run(amounts, kw):
    resp = np.stack([np.asarray(neuron(transform(images, **kw(a))), np.float64) for a in amounts])
    return {
      "amount": [float(a) for a in amounts],
      "mean": resp.mean(1).tolist(),
      "sd": resp.std(1).tolist(),
    }

  return {
    "scale": run(scales, lambda s: {"scale": s}),
    "shift_x": run(shifts, lambda s: {"shift": (0.0, s * w)}),
    "shift_y": run(shifts, lambda s: {"shift": (s * h, 0.0)}),
    "rotation": run(angles, lambda a: {"angle": a}),
  }


def plot(result: dict, path: str, title: str = "", threshold: float | None = None) -> None:
  """One panel per factor: mean response ± sd against the amount; the threshold dashed."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  labels = {
    "scale": "scale factor",
    "shift_x": "horizontal shift (fraction of frame)",
    "shift_y": "vertical shift (fraction of frame)",
    "rotation": "in-plane rotation (degrees)",
  }
  fig, axes = plt.subplots(1, len(result), figsize=(3.2 * len(result), 3.0), squeeze=False)
  for ax, (k, r) in zip(axes[0], result.items()):
    a, m, s = (np.asarray(r[q]) for q in ("amount", "mean", "sd"))
    ax.plot(a, m, "o-", color="C0")
    ax.fill_between(a, m - s, m + s, color="C0", alpha=0.2)
    if threshold is not None:
      ax.axhline(threshold, color="k", ls="--", lw=0.8, label="threshold")
      ax.legend(fontsize=7)
    ax.set_xlabel(labels.get(k, k), fontsize=8)
    ax.set_ylabel("response", fontsize=8)
    ax.tick_params(labelsize=7)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
