"""ZCA whitening fitted on small patches, applied to whole images as a convolution filter.

As in Coates et al. 2013 / Le et al. 2012, the ZCA transform ``W = U diag(1/sqrt(l + eps)) U^T``
is fitted on ``p x p x C`` patches (``p`` odd) of per-image-normalized images. The row of ``W``
that produces the centre pixel of a patch is a ``p x p x C -> C`` linear filter: correlating the
whole image with it whitens every pixel as if it were the centre of its own patch, so one filter
serves any image size S (and small patches). The filter is averaged with its left-right and
up-down mirror images (natural-image statistics have those symmetries; it halves the estimation
noise), which makes it exactly invertible in the Fourier domain of the image's mirror extension:

* ``apply``: 'symmetric' (half-sample mirror) padding by ``p // 2``, then the filter: purely
  linear, so it applies equally to images and to learned filters;
* ``undo``: the image is mirror-extended to ``2H x 2W`` (what 'symmetric' padding sees), and each
  frequency's ``C x C`` response ``H`` is inverted with Tikhonov regularization,
  ``(H^T H + reg * max|H|^2 I)^-1 H^T``: exact up to ``reg`` for ``reg -> 0``.

The statistics are saved to ``<workdir>/whitening.npz`` and reloaded on resume (exact resume).
"""

from __future__ import annotations

import os

import numpy as np


class Whitening:
  """A ``(p, p, C, C)`` whitening filter: ``out[..., c] = sum kernel[dy, dx, c_in, c] * x``."""

  def __init__(self, kernel: np.ndarray, eigenvalues: np.ndarray | None = None, meta=None):
    kernel = np.asarray(kernel, np.float32)
    if kernel.ndim != 4 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
      raise ValueError(f"whitening kernel must be (p, p, C, C) with p odd, got {kernel.shape}")
    self.kernel = kernel
    self.eigenvalues = None if eigenvalues is None else np.asarray(eigenvalues)
    self.meta = dict(meta or {})

  @property
  def patch(self) -> int:
    return self.kernel.shape[0]

  @property
  def channels(self) -> int:
    return self.kernel.shape[2]

  def __repr__(self) -> str:
    p, c = self.patch, self.channels
    return f"Whitening({p}x{p}x{c} ZCA filter, eps={self.meta.get('eps', '?')})"

  def _check(self, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 3 or x.shape[-1] != self.channels:
      raise ValueError(f"expected (..., H, W, {self.channels}) arrays, got shape {x.shape}")
    return x

  def apply(self, x: np.ndarray) -> np.ndarray:
    """Whiten ``(..., H, W, C)`` float arrays (images or patches of any size)."""
    x = self._check(x).astype(np.float32)
    r = self.patch // 2
    h, w = x.shape[-3:-1]
    pad = [(0, 0)] * (x.ndim - 3) + [(r, r), (r, r), (0, 0)]
    xp = np.pad(x, pad, mode="symmetric")
    out = np.zeros(x.shape, np.float32)
    for dy in range(self.patch):
      for dx in range(self.patch):
        out += xp[..., dy : dy + h, dx : dx + w, :] @ self.kernel[dy, dx]
    return out

  def response(self, h: int, w: int) -> np.ndarray:
    """The filter's frequency response on the ``2h x 2w`` mirror extension: ``(2h, 2w, C, C)``."""
    r = self.patch // 2
    k = np.zeros((2 * h, 2 * w) + self.kernel.shape[2:], np.float64)
    for dy in range(self.patch):
      for dx in range(self.patch):
        k[(dy - r) % (2 * h), (dx - r) % (2 * w)] += self.kernel[dy, dx]
    # Correlation with a mirror-symmetric kernel = convolution; the response is real.
    return np.real(np.fft.fft2(k, axes=(0, 1)))

  def undo(self, x: np.ndarray, reg: float = 1e-6) -> np.ndarray:
    """Approximate inverse of `apply` (for display): regularized division in Fourier space."""
    x = self._check(x).astype(np.float64)
    h, w = x.shape[-3:-1]
    ext = np.concatenate([x, np.flip(x, -3)], axis=-3)
    ext = np.concatenate([ext, np.flip(ext, -2)], axis=-2)
    f = np.fft.fft2(ext, axes=(-3, -2))  # (..., 2h, 2w, C)
    hm = np.swapaxes(self.response(h, w), -1, -2)  # y = hm @ x per frequency: (2h, 2w, Cout, Cin)
    gram = np.swapaxes(hm, -1, -2) @ hm
    lam = reg * float(np.max(np.abs(gram)))
    inv = np.linalg.solve(gram + lam * np.eye(self.channels), np.swapaxes(hm, -1, -2))
    out = np.real(np.fft.ifft2(np.einsum("...ij,...j->...i", inv, f), axes=(-3, -2)))
    return out[..., :h, :w, :].astype(np.float32)

  def save(self, path: str) -> None:
    """Atomic write (tmp + rename), so a crash never leaves a half-written file."""
    tmp = f"{path}.tmp{os.getpid()}.npz"
    extra = {} if self.eigenvalues is None else {"eigenvalues": self.eigenvalues}
    meta = {f"meta_{k}": np.asarray(v) for k, v in self.meta.items()}
    np.savez(tmp, kernel=self.kernel, **extra, **meta)
    os.replace(tmp, path)

  @classmethod
  def load(cls, path: str) -> Whitening:
    with np.load(path) as z:
      meta = {k[5:]: z[k].item() for k in z.files if k.startswith("meta_")}
      eig = z["eigenvalues"] if "eigenvalues" in z.files else None
      return cls(z["kernel"], eig, meta)


def sample_patches(images, patch: int, num: int, seed: int) -> np.ndarray:
  """``num`` random ``patch x patch x C`` patches (flattened ``(dy, dx, c)``) from ``images``."""
  rng = np.random.default_rng([abs(int(seed)), 0x5A1])
  images = [np.asarray(im, np.float32) for im in images]
  per = -(-num // len(images))
  out = []
  for im in images:
    h, w, _ = im.shape
    if h < patch or w < patch:
      raise ValueError(f"image {im.shape} is smaller than the whitening patch {patch}")
    ys = rng.integers(0, h - patch + 1, per)
    xs = rng.integers(0, w - patch + 1, per)
    idx_y = ys[:, None] + np.arange(patch)[None, :]
    idx_x = xs[:, None] + np.arange(patch)[None, :]
    p = im[idx_y[:, :, None], idx_x[:, None, :]]  # (per, patch, patch, C)
    out.append(p.reshape(per, -1))
  return np.concatenate(out)[:num]


def fit(images, patch: int = 9, num_patches: int = 50_000, eps: float = 0.1, seed: int = 0):
  """Fit the ZCA filter on patches of normalized ``(H, W, C)`` images; returns `Whitening`."""
  if patch % 2 == 0:
    raise ValueError(f"whitening patch must be odd, got {patch}")
  x = sample_patches(images, patch, num_patches, seed).astype(np.float64)
  c = x.shape[1] // (patch * patch)
  x -= x.mean(axis=0)
  cov = x.T @ x / max(len(x) - 1, 1)
  lam, u = np.linalg.eigh(cov)
  lam = np.clip(lam, 0.0, None)
  zca = (u * (1.0 / np.sqrt(lam + eps))) @ u.T  # (D, D), D ordered (dy, dx, c)
  r = patch // 2
  rows = zca.reshape(patch, patch, c, patch, patch, c)[r, r]  # (c_out, dy, dx, c_in)
  kernel = np.transpose(rows, (1, 2, 3, 0))  # (dy, dx, c_in, c_out)
  kernel = (kernel + kernel[::-1] + kernel[:, ::-1] + kernel[::-1, ::-1]) / 4.0
  meta = dict(patch=patch, channels=c, eps=float(eps), num_patches=len(x), seed=int(seed))
  return Whitening(kernel.astype(np.float32), lam[::-1], meta)
