"""Figures of the context-prediction task: what the network is asked, and what its tower learned.

* `task_samples` — drawn samples with their arrangement labels: each patch placed at its grid
  cell in the photograph (for the triple task each patch turned by the label's rotation), the
  guards applied as in training.
* `nearest_neighbours` — Doersch et al.'s Fig. 4 style: query patches from held-out images and the
  patches nearest to them in the tower's feature space (cosine similarity), trained and random.

Both draw on their own Agg figure (like `livermore_brain.viz`) and return the path written.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from livermore_brain import viz


def _rgb(x: np.ndarray) -> np.ndarray:
  x = np.clip(np.asarray(x, np.float32), 0, 1)
  return np.repeat(x, 3, -1) if x.shape[-1] == 1 else x


def task_samples(task, images, path: str, n: int = 8, seed: int = 0) -> str:
  """``n`` samples drawn from ``images`` (whole images in [0, 1]) by ``task.draw``."""
  s = jax.device_get(task.draw(jax.random.key(seed), jnp.asarray(images[:n])))
  t, g = task.table, task.geom
  cols = min(n, 4)
  rows = -(-n // cols)
  fig = Figure(figsize=(2.6 * cols, 2.9 * rows), dpi=100)
  for i in range(n):
    ax = fig.add_subplot(rows, cols, i + 1)
    pitch = g.patch + 2
    canvas = np.ones((3 * pitch, 3 * pitch, 3), np.float32)
    base = int(s["base"][i])
    for k, (r, c) in enumerate(t.cells[base]):
      canvas[r * pitch + 1 : r * pitch + 1 + g.patch, c * pitch + 1 : c * pitch + 1 + g.patch] = (
        _rgb(s["patches"][i, k])
      )
      ax.text(c * pitch + 2, r * pitch + 4, str(k), color="yellow", fontsize=7, va="top")
    ax.imshow(canvas, interpolation="nearest")
    ax.set_title(f"class {int(s['label'][i])}: {t.describe(int(s['label'][i]))}", fontsize=8)
    ax.axis("off")
  title = f"{t.name} task: patches at their grid cells of the photograph (slots in yellow)"
  if t.rotations > 1:  # which frame the arrangement part of the label names
    frame = str(task.config.context.get("frame", "upright"))
    title += "; each turned by its rotation, the label naming the cells of the " + (
      "turned image" if frame == "turned" else "photograph"
    )
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  return viz._save(fig, path)  # noqa: SLF001 - the package's one PNG writer


def held_out_patches(task, images, per_image: int = 8, seed: int = 1) -> np.ndarray:
  """Unaugmented patches of the grid cells of ``images`` (``per_image`` each), ``(N, P, P, C)``."""
  out = []
  for d in range(-(-per_image // task.table.num_patches)):
    s = task.draw(jax.random.key(seed * 1000 + d), jnp.asarray(images), augment=False)
    p = np.asarray(s["patches"])
    out.append(p.reshape(-1, *p.shape[2:]))
  return np.concatenate(out)


def nearest_neighbours(
  fxs: dict,
  patches: np.ndarray,
  path: str,
  layer: str = "pool",
  queries: int = 6,
  k: int = 5,
  seed: int = 0,
) -> str:
  """Rows: a query patch, then its ``k`` nearest other patches under each extractor in ``fxs``
  (``{"trained": fx, "random init": twin}``), by cosine similarity of ``layer`` features."""
  rng = np.random.default_rng(seed)
  q = rng.choice(len(patches), size=queries, replace=False)
  blocks = {}
  for name, fx in fxs.items():
    f = fx.features(patches, layer)
    f = f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-8)
    sim = f[q] @ f.T
    sim[np.arange(queries), q] = -np.inf
    blocks[name] = np.argsort(-sim, axis=1)[:, :k]
  cols = 1 + k * len(fxs)
  fig = Figure(figsize=(1.0 * cols + 0.6, 1.1 * queries + 0.5), dpi=100)
  for i in range(queries):
    ax = fig.add_subplot(queries, cols, i * cols + 1)
    ax.imshow(_rgb(patches[q[i]]), interpolation="nearest")
    ax.axis("off")
    if i == 0:
      ax.set_title("query", fontsize=8)
    for j, (name, nn_idx) in enumerate(blocks.items()):
      for m in range(k):
        ax = fig.add_subplot(queries, cols, i * cols + 2 + j * k + m)
        ax.imshow(_rgb(patches[nn_idx[i, m]]), interpolation="nearest")
        ax.axis("off")
        if i == 0 and m == 0:
          ax.set_title(f"{name} ({layer})", fontsize=8, loc="left")
  fig.tight_layout()
  return viz._save(fig, path)  # noqa: SLF001
