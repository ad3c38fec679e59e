"""Predicted vs true frames of a predictive autoencoder (``predictions.png``)."""

from __future__ import annotations

import numpy as np


def prediction_figure(context, future, predicted, path: str, title: str = "") -> str:
  """One block of rows per clip: its context frames, then the true next frames, then the
  predicted ones under them; each clip scaled to its own [min, max]. Writes ``path``."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  context, future, predicted = (np.asarray(a, np.float32) for a in (context, future, predicted))
  n, k = context.shape[:2]
  p = future.shape[1]
  cols = k + p
  fig, axes = plt.subplots(2 * n, cols, figsize=(cols * 0.9, 2 * n * 0.95), squeeze=False)
  for i in range(n):
    lo = min(context[i].min(), future[i].min())
    hi = max(context[i].max(), future[i].max(), lo + 1e-6)

    def show(ax, f, lo=lo, hi=hi):
      g = np.clip((f - lo) / (hi - lo), 0, 1)
      ax.imshow(g[..., 0] if g.shape[-1] == 1 else g, cmap="gray", vmin=0, vmax=1)

    for j in range(cols):
      top, bottom = axes[2 * i, j], axes[2 * i + 1, j]
      if j < k:
        show(top, context[i, j])
      else:
        show(top, future[i, j - k])
        show(bottom, predicted[i, j - k])
      for ax in (top, bottom):
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
          s.set_visible(False)
    axes[2 * i, 0].set_ylabel("true", fontsize=7)
    axes[2 * i + 1, k].set_ylabel("predicted", fontsize=7)
  for j in range(cols):
    axes[0, j].set_title(f"t{j + 1}" + (" (ctx)" if j < k else ""), fontsize=6)
  if title:
    fig.suptitle(title, fontsize=8)
  fig.tight_layout(pad=0.2)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
