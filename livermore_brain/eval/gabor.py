"""How many filters are Gabor-like? A 2-D Gabor fitted to each filter, R² as the score.

ICA / RICA filters learned on whitened natural photographs are localized, oriented, band-pass:
a 2-D Gabor (a Gaussian envelope times a sinusoidal carrier) fits most of them closely (van
Hateren & van der Schaaf 1998; Le et al. 2011, the paper's Fig. 4). Random unit-norm filters,
shown the same way, are not localized and fit poorly. So the share of filters whose Gabor fit
explains more than a threshold of their variance (R²), set against the same share for random
filters, measures the "looks like the paper's filters" claim instead of leaving it to the eye.

The model, on a filter's ``(h, w)`` pixel grid (coordinates in pixels, centred at ``x0, y0``):

  g(x, y) = A exp(-(u² / (2 sx²) + v² / (2 sy²))) cos(2π f u + φ) + c
  u = (x - x0) cos θ + (y - y0) sin θ,   v = -(x - x0) sin θ + (y - y0) cos θ

fitted by bounded least squares (`scipy.optimize.least_squares`) from a few starts: carrier
frequency and orientation from the filter's Fourier peak, centre from its smoothed energy peak,
two phases. ``R² = 1 - SS_res / SS_tot`` over the filter's pixels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, optimize

# (x0, y0, theta, sx, sy, f, phi, A, c)
NUM_PARAMS = 9


def gabor(params, h: int, w: int) -> np.ndarray:
  """The Gabor of ``params`` (see the module docstring) on an ``(h, w)`` grid."""
  x0, y0, th, sx, sy, f, ph, a, c = params
  y, x = np.mgrid[0:h, 0:w].astype(np.float64)
  u = (x - x0) * np.cos(th) + (y - y0) * np.sin(th)
  v = -(x - x0) * np.sin(th) + (y - y0) * np.cos(th)
  env = np.exp(-(u**2) / (2 * sx**2) - v**2 / (2 * sy**2))
  return a * env * np.cos(2 * np.pi * f * u + ph) + c


def _starts(img: np.ndarray):
  h, w = img.shape
  z = img - img.mean()
  spec = np.abs(np.fft.fft2(z))
  spec[0, 0] = 0.0
  ky, kx = np.unravel_index(int(np.argmax(spec)), spec.shape)
  fy = (ky if ky <= h // 2 else ky - h) / h
  fx = (kx if kx <= w // 2 else kx - w) / w
  f = float(np.hypot(fx, fy))
  th = float(np.arctan2(fy, fx))
  energy = ndimage.gaussian_filter(z**2, sigma=max(1.0, min(h, w) / 8))
  cy, cx = np.unravel_index(int(np.argmax(energy)), energy.shape)
  amp = float(np.max(np.abs(z))) or 1.0
  s = max(h, w) / 4
  for ph in (0.0, np.pi / 2):
    for ff in (f, 0.0):  # the Fourier peak, and a plain blob (carrier of frequency 0)
      yield np.array([float(cx), float(cy), th, s, s, ff, ph, amp, float(img.mean())])


def fit(img: np.ndarray) -> tuple[np.ndarray, float]:
  """Best Gabor ``params`` and its R² for one 2-D filter image (float64)."""
  img = np.asarray(img, np.float64)
  if img.ndim != 2:
    raise ValueError(f"fit takes one 2-D filter image, got shape {img.shape}")
  h, w = img.shape
  ss_tot = float(np.sum((img - img.mean()) ** 2))
  if ss_tot <= 0:
    return np.zeros(NUM_PARAMS), 0.0
  lo = [-0.5, -0.5, -4 * np.pi, 0.5, 0.5, 0.0, -4 * np.pi, -np.inf, -np.inf]
  hi = [
    w - 0.5,
    h - 0.5,
    4 * np.pi,
    2.0 * max(h, w),
    2.0 * max(h, w),
    0.5,
    4 * np.pi,
    np.inf,
    np.inf,
  ]
  best, best_cost = None, np.inf
  for p0 in _starts(img):
    p0 = np.clip(p0, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
    r = optimize.least_squares(
      lambda p: (gabor(p, h, w) - img).ravel(), p0, bounds=(lo, hi), max_nfev=100
    )
    if r.cost < best_cost:
      best, best_cost = r.x, r.cost
  return best, float(1.0 - 2.0 * best_cost / ss_tot)


def luminance(filters: np.ndarray) -> np.ndarray:
  """``(n, h, w, c)`` filter images -> ``(n, h, w)``: the mean over channels (what a Gabor of
  brightness sees; a pure colour-opponent filter has little of it and fits poorly)."""
  f = np.asarray(filters, np.float64)
  return f.mean(axis=-1) if f.ndim == 4 else f


def r2_scores(filters: np.ndarray) -> np.ndarray:
  """R² of the best Gabor fit of every ``(n, h, w[, c])`` filter image."""
  return np.array([fit(f)[1] for f in luminance(filters)])


def summary(trained: np.ndarray, random: np.ndarray, threshold: float = 0.8) -> dict:
  """Shares of trained and random filters with R² above ``threshold``, and the medians."""
  t, r = np.ravel(trained), np.ravel(random)
  return {
    "threshold": float(threshold),
    "trained_share": float(np.mean(t > threshold)),
    "random_share": float(np.mean(r > threshold)),
    "trained_median_r2": float(np.median(t)),
    "random_median_r2": float(np.median(r)),
    "filters": int(t.size),
  }
