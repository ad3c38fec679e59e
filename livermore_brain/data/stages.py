"""The optional preprocessing stages, in their fixed order, as the data config sets them.

1. geometry (`crop`): ``center`` | ``random`` | ``resize`` to the spec's ``(H, W)`` (`images.crop`);
2. ``flip``: a random horizontal flip (probability 1/2);
3. ``color_jitter`` = s: brightness and contrast factors in ``[1 - s, 1 + s]`` and, on 3-channel
   images, saturation in ``[1 - s, 1 + s]``;
4. ``normalize``: per-image zero mean / unit std (True), else *scale*: float32 in [0, 1];
5. ``whiten``: the ZCA filter (`whitening`).

Stages 1-3 run per image in numpy (uint8 in, uint8 out), with one generator per example seeded
from ``(seed, global example index)`` and drawn in this order (crop, flip, jitter), so every
image is a pure function of ``(cfg, seed, example)``: deterministic, resumable and independent of
the process count. Stages 4-5 run per batch in TensorFlow (`tf_ops`). No TensorFlow here.
"""

from __future__ import annotations

import numpy as np

from livermore_brain.data import images

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def resolve_crop(crop: str, source) -> str:
  """``auto`` -> the source's ``default_crop`` (random: builtin, resize: mnist/digits, center)."""
  return crop if crop != "auto" else getattr(source, "default_crop", "center")


def jitter(img: np.ndarray, rng, strength: float) -> np.ndarray:
  """Random brightness, contrast (and saturation for RGB) of a ``uint8 (H, W, C)`` image.

  Factors ``U[1 - s, 1 + s]``, applied in that order: ``x * b``; ``(x - mean gray) * c + mean
  gray``; ``gray + (x - gray) * f`` (ITU-R 601 luminance); rounded and clipped back to uint8.
  Always draws three factors (a fixed number of draws per example).
  """
  s = float(strength)
  b, c, f = rng.uniform(1.0 - s, 1.0 + s, 3)
  x = img.astype(np.float32) * np.float32(b)
  rgb = x.shape[-1] == 3
  gray = (x @ _LUMA)[..., None] if rgb else x
  m = np.float32(gray.mean())
  x = (x - m) * np.float32(c) + m
  if rgb:
    gray = (x @ _LUMA)[..., None]
    x = gray + (x - gray) * np.float32(f)
  return np.clip(np.rint(x), 0, 255).astype(np.uint8)


class Stages:
  """Stage 1-3 of one pipeline: ``geometry(obj, rng)`` then ``augment(img, rng)``."""

  def __init__(self, cfg, spec, source):
    self.cfg = cfg
    self.height, self.width, self.channels = spec.image_shape
    self.crop = resolve_crop(cfg.crop, source)
    self.flip = bool(cfg.flip)
    self.jitter = float(cfg.color_jitter)
    self.normalize = bool(cfg.normalize)

  @property
  def random(self) -> bool:
    """Whether an example needs its generator."""
    return self.crop == "random" or self.flip or self.jitter > 0

  @property
  def augments(self) -> bool:
    return self.flip or self.jitter > 0

  def geometry(self, obj, rng) -> np.ndarray:
    """Decode + crop / resize to ``uint8 (H, W, C)`` (draws from ``rng`` for random crops)."""
    cfg = self.cfg
    return images.crop(
      obj, (self.height, self.width), self.channels, self.crop, rng,
      cfg.random_crop_min_scale, cfg.grayscale,
    )  # fmt: skip

  def augment(self, img: np.ndarray, rng) -> np.ndarray:
    """Flip, then color jitter (each only when configured)."""
    if self.flip and rng.random() < 0.5:
      img = np.ascontiguousarray(img[:, ::-1])
    if self.jitter > 0:
      img = jitter(img, rng, self.jitter)
    return img

  def __call__(self, obj, rng) -> np.ndarray:
    return self.augment(self.geometry(obj, rng), rng)

  def describe(self) -> str:
    h, w, c = self.height, self.width, self.channels
    parts = [
      f"{h}x{w}x{c} {self.crop} crops" if self.crop != "resize" else f"resized to {h}x{w}x{c}"
    ]
    if self.cfg.grayscale:
      parts.append("grayscale")
    if self.flip:
      parts.append("random flips")
    if self.jitter > 0:
      parts.append(f"color jitter {self.jitter:g}")
    parts.append("per-image normalized" if self.normalize else "scaled to [0, 1]")
    return ", ".join(parts)
