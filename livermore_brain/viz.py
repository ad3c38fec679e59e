"""Figures for "what did the network learn?", written as PNG files.

Every function draws on its own `matplotlib.figure.Figure` rendered by the Agg canvas — no
pyplot, no global backend switch, no figures left open — writes ``path`` (parent folders are
created) and returns it. Inputs are numpy arrays (JAX arrays are converted).

* `filter_grid` — first-layer filters, a sample of grid locations (rows) x a few filters (columns).
* `image_grid` — top-k stimuli: rows = neurons, columns = their top images.
* `histogram` — overlaid distributions, e.g. per-neuron selectivity of a trained vs a random net.
* `loss_curves` — per-layer losses (``layer1/loss``, ...) against ``step`` from metrics.jsonl rows.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _save(fig: Figure, path: str) -> str:
  path = os.fspath(path)
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  FigureCanvasAgg(fig)
  fig.savefig(path, format="png", dpi=fig.dpi)
  return path


def _symmetric(tile: np.ndarray) -> np.ndarray:
  """Contrast-normalize one tile to [0, 1] with 0 -> mid-gray (signed filters keep their sign)."""
  m = float(np.max(np.abs(tile)))
  return np.full_like(tile, 0.5) if m == 0 else 0.5 + 0.5 * tile / m


def _minmax(tile: np.ndarray) -> np.ndarray:
  lo, hi = float(np.min(tile)), float(np.max(tile))
  return np.full_like(tile, 0.5) if hi <= lo else (tile - lo) / (hi - lo)


def _displayable(x: np.ndarray) -> np.ndarray:
  """(..., H, W, C) -> (..., H, W, 1 or 3): C not in {1, 3} shows the L2 norm over channels."""
  if x.shape[-1] in (1, 3):
    return x
  return np.sqrt(np.sum(np.square(x), axis=-1, keepdims=True))


def _mosaic(tiles: np.ndarray, pad: int = 1) -> np.ndarray:
  """tiles (R, C, h, w, ch) in [0, 1] -> one image with ``pad``-pixel white separators."""
  r, c, h, w, ch = tiles.shape
  out = np.ones((r * (h + pad) + pad, c * (w + pad) + pad, ch), np.float32)
  for i in range(r):
    for j in range(c):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      out[y : y + h, x : x + w] = tiles[i, j]
  return out


def _show(ax, img: np.ndarray):
  if img.shape[-1] == 1:
    ax.imshow(img[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
  else:
    ax.imshow(np.clip(img, 0.0, 1.0), interpolation="nearest")


def filter_grid(
  w,
  field_h: int,
  field_w: int,
  channels: int,
  path: str,
  num_locations: int | None = None,
  max_filters: int = 8,
  locations: Sequence[int] | None = None,
  undo: Callable[[np.ndarray], np.ndarray] | None = None,
  title: str | None = None,
  max_locations: int = 16,
  location_ids: Sequence[int] | None = None,
) -> str:
  """Tile filters ``w`` ``(L, K, D)`` (``D`` ordered ``(dy, dx, c)``): rows = locations.

  ``location_ids``: the layer's location id of each of ``w``'s rows, for when ``w`` holds a
  sample of a layer's locations (the row labels show these ids); default ``0..L-1``.

  Locations are ``locations`` when given, else ``max_locations`` evenly spaced among the first
  ``num_locations`` (the real ones; padded locations beyond it are never shown). Each row shows
  the first ``max_filters`` filters of its location. ``undo`` maps the ``(n, field_h, field_w,
  channels)`` filter images to display space (e.g. undoing whitening) before each tile is
  contrast-normalized on its own, symmetrically around zero (gray = 0). Filters with other than 1
  or 3 channels (deeper layers) are shown as their per-pixel L2 norm over channels (black = 0).
  """
  w = np.asarray(w, np.float32)
  if w.ndim != 3 or w.shape[2] != field_h * field_w * channels:
    raise ValueError(
      f"filters must be (L, K, D) with D = {field_h}*{field_w}*{channels} = "
      f"{field_h * field_w * channels}, got shape {w.shape}"
    )
  n_real = w.shape[0] if num_locations is None else int(num_locations)
  if not 0 < n_real <= w.shape[0]:
    raise ValueError(f"num_locations={num_locations} must be in 1..{w.shape[0]}")
  if locations is None:
    locs = np.unique(np.linspace(0, n_real - 1, min(max_locations, n_real)).round().astype(int))
  else:
    locs = np.asarray(locations, int)
    if locs.size == 0 or locs.min() < 0 or locs.max() >= n_real:
      raise ValueError(f"locations must be non-empty and within 0..{n_real - 1}, got {locations}")
  ids = np.arange(w.shape[0]) if location_ids is None else np.asarray(location_ids, int)
  if ids.shape != (w.shape[0],):
    raise ValueError(f"location_ids must give one id per row of w ({w.shape[0]}), got {ids.shape}")
  k = min(max_filters, w.shape[1])
  imgs = w[locs, :k].reshape(len(locs) * k, field_h, field_w, channels)
  if undo is not None:
    imgs = np.asarray(undo(imgs), np.float32)
    if imgs.ndim != 4 or imgs.shape[0] != len(locs) * k:
      raise ValueError(f"undo must return (n, h, w, c) images, got shape {imgs.shape}")
  signed = imgs.shape[-1] in (1, 3)
  imgs = _displayable(imgs)
  norm = _symmetric if signed else lambda t: t / max(float(t.max()), 1e-30)  # norms: 0 = black
  tiles = np.stack([norm(t) for t in imgs]).reshape(len(locs), k, *imgs.shape[1:])
  mosaic = _mosaic(tiles)
  scale = 0.45 * max(1.0, 8.0 / max(field_h, field_w))
  fig = Figure(figsize=(1.2 + scale * k * 0.6 + 0.8, 0.8 + scale * len(locs) * 0.6), dpi=100)
  ax = fig.add_subplot()
  _show(ax, mosaic)
  h = imgs.shape[1] + 1
  ax.set_yticks([1 + i * h + (h - 1) / 2 for i in range(len(locs))])
  ax.set_yticklabels([f"loc {ids[i]}" for i in locs], fontsize=7)
  ax.set_xticks([])
  ax.set_xlabel(f"first {k} of {w.shape[1]} filters per location", fontsize=8)
  ax.set_title(title or f"{len(locs)} of {n_real} locations, {field_h}x{field_w}x{channels}")
  fig.tight_layout()
  return _save(fig, path)


def image_grid(
  images,
  path: str,
  rows: int | None = None,
  titles: Sequence[str] | None = None,
  normalize: bool | None = None,
  suptitle: str | None = None,
) -> str:
  """A grid of images: ``(R, C, H, W, ch)``, or ``(N, H, W, ch)`` laid out in ``rows`` rows.

  For top-k stimuli pass ``(neurons, k, H, W, ch)``. ``titles``: one per row (shown at the left,
  e.g. ``"neuron 17"``) or one per image (shown above it). ``normalize``: min-max each image
  to [0, 1] (for whitened or LCN'd inputs); by default only when values leave [0, 1].
  """
  x = np.asarray(images, np.float32)
  if x.ndim == 4:
    n = x.shape[0]
    if n == 0:
      raise ValueError("image_grid needs at least one image")
    r = min(int(rows), n) if rows else 1
    c = math.ceil(n / r)
    pad = np.full((r * c - n, *x.shape[1:]), np.nan, np.float32)
    x = np.concatenate([x, pad]).reshape(r, c, *x.shape[1:])
  elif x.ndim != 5:
    raise ValueError(f"images must be (N, H, W, C) or (rows, cols, H, W, C), got {x.shape}")
  else:
    n = x.shape[0] * x.shape[1]
  r, c = x.shape[:2]
  if x.shape[-1] not in (1, 3):
    raise ValueError(f"images must have 1 or 3 channels, got {x.shape[-1]}")
  finite = x[np.isfinite(x)]
  if normalize is None:
    normalize = finite.size > 0 and (finite.min() < 0.0 or finite.max() > 1.0)
  titles = list(titles) if titles is not None else None
  per_image = titles is not None and len(titles) == n and c > 1
  if titles is not None and not per_image and len(titles) != r:
    raise ValueError(
      f"titles: expected {r} (one per row) or {n} (one per image), got {len(titles)}"
    )
  # One mosaic in one axes (white gaps; a title row above each tile when there are per-image
  # titles): a subplot per image cost ~12 ms each to lay out and draw, 0.8 s for a GAN's 8x8
  # sample grid at every checkpoint.
  h, w = x.shape[2:4]
  gap_x = max(1, round(0.12 * w))
  gap_y = max(gap_x, round(0.3 * h)) if per_image else gap_x
  out = np.ones((r * (h + gap_y) + gap_x, c * (w + gap_x) + gap_x, x.shape[-1]), np.float32)
  for i in range(r):
    for j in range(c):
      img = x[i, j]
      if not np.isnan(img).all():  # padding cells stay white
        y0, x0 = gap_y + i * (h + gap_y), gap_x + j * (w + gap_x)
        out[y0 : y0 + h, x0 : x0 + w] = np.clip(_minmax(img) if normalize else img, 0.0, 1.0)
  fig = Figure(figsize=(1.3 * c + (1.0 if titles and not per_image else 0.2), 1.3 * r + 0.4))
  ax = fig.add_subplot()
  _show(ax, out)
  ax.set_xticks([])
  for spine in ax.spines.values():
    spine.set_visible(False)
  rows_at = [gap_y + i * (h + gap_y) + (h - 1) / 2 for i in range(r)]
  if titles is not None and not per_image:
    ax.set_yticks(rows_at, [str(t) for t in titles], fontsize=8)
    ax.tick_params(left=False)
  else:
    ax.set_yticks([])
  if per_image:
    for k in range(n):  # padding cells have no title
      i, j = divmod(k, c)
      x_mid = gap_x + j * (w + gap_x) + (w - 1) / 2
      ax.text(x_mid, rows_at[i] - h / 2 - 1, str(titles[k]), fontsize=7, ha="center", va="bottom")
  if suptitle:
    fig.suptitle(suptitle)
  fig.tight_layout()
  return _save(fig, path)


def histogram(
  values_by_name: Mapping[str, np.ndarray],
  path: str,
  bins: int = 40,
  title: str | None = None,
  xlabel: str | None = None,
  vlines: Mapping[str, float] | None = None,
  density: bool = False,
  log: bool = False,
) -> str:
  """Overlaid histograms over shared bins (e.g. ``{"trained": acc, "random": acc0}``).

  ``vlines``: labelled reference lines, e.g. ``{"chance": 0.5}``.
  """
  if not values_by_name:
    raise ValueError("histogram needs at least one named array of values")
  vals = {k: np.asarray(v, np.float64).reshape(-1) for k, v in values_by_name.items()}
  vals = {k: v[np.isfinite(v)] for k, v in vals.items()}
  allv = np.concatenate([v for v in vals.values()] + [np.zeros(0)])
  lo, hi = (float(allv.min()), float(allv.max())) if allv.size else (0.0, 1.0)
  if hi <= lo:
    lo, hi = lo - 0.5, hi + 0.5
  edges = np.linspace(lo, hi, bins + 1)
  fig = Figure(figsize=(6, 4))
  ax = fig.add_subplot()
  for name, v in vals.items():
    ax.hist(v, bins=edges, alpha=0.5, label=f"{name} (n={v.size})", density=density, log=log)
  for name, x in (vlines or {}).items():
    ax.axvline(x, color="k", linestyle="--", linewidth=1)
    ax.annotate(name, (x, 1.0), xycoords=("data", "axes fraction"), fontsize=8, va="top")
  ax.set_xlabel(xlabel or "value")
  ax.set_ylabel("density" if density else "count")
  ax.legend(fontsize=8)
  if title:
    ax.set_title(title)
  fig.tight_layout()
  return _save(fig, path)


def read_jsonl(path: str) -> list[dict]:
  """Rows of a metrics.jsonl file; blank or truncated (partially written) lines are skipped."""
  rows = []
  with open(path) as f:
    for line in f:
      try:
        row = json.loads(line)
      except json.JSONDecodeError:
        continue
      if isinstance(row, dict):
        rows.append(row)
  return rows


def loss_curves(
  metrics_rows: Sequence[Mapping] | str,
  path: str,
  keys: Sequence[str] | None = None,
  title: str | None = None,
  logy: bool | None = None,
) -> str:
  """Plot metrics against ``step``, one panel per key (default: every ``*/loss`` and ``loss``).

  ``metrics_rows``: dicts as in metrics.jsonl, or that file's path. Rows without ``step`` or
  without a key are skipped for that key (layers that start late in a pipelined schedule simply
  begin later). ``logy``: log scale; by default when a curve is positive and spans > 30x.
  """
  rows = read_jsonl(metrics_rows) if isinstance(metrics_rows, str | os.PathLike) else metrics_rows
  rows = [r for r in rows if "step" in r]
  if keys is None:
    found = {k for r in rows for k in r if re.fullmatch(r"(.+/)?loss", k)}
    keys = sorted(found)
  if not keys:
    raise ValueError("no loss keys (like 'layer1/loss') with a 'step' found in the metrics rows")
  fig = Figure(figsize=(6, 2.2 * len(keys) + 0.6))
  axes = fig.subplots(len(keys), 1, squeeze=False, sharex=True)[:, 0]
  for ax, key in zip(axes, keys):
    pts = [(r["step"], r[key]) for r in rows if _is_number(r.get(key))]
    pts = [(s, v) for s, v in pts if math.isfinite(v)]
    ax.set_ylabel(key, fontsize=8)
    ax.grid(alpha=0.3)
    if not pts:
      ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
      continue
    s, v = np.asarray(pts, np.float64).T
    ax.plot(s, v, linewidth=1)
    use_log = logy if logy is not None else (v.min() > 0 and v.max() / v.min() > 30)
    if use_log and v.min() > 0:
      ax.set_yscale("log")
  axes[-1].set_xlabel("step")
  if title:
    axes[0].set_title(title)
  fig.tight_layout()
  return _save(fig, path)


def _is_number(v) -> bool:
  return isinstance(v, int | float) and not isinstance(v, bool)
