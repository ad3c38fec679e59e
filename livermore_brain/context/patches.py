"""Patch sampling on the accelerator: a batch of whole images in, the patches of one arrangement
per image and their class labels out, all inside the jitted step (no per-patch Python).

    geom = Geometry(patch=24, gap=8, jitter=3)            # image side >= geom.min_side
    s = sample(key, images, arrangements.TRIPLE, geom)     # images (B, S, S, C) in [0, 1]
    s["patches"]   # (B, K, P, P, C)
    s["label"]     # (B,) int32: rotation * num_base + arrangement
    s["corner"]    # (B, K, 2) int32: top-left (y, x) of each patch in the (flipped) image
    x = augment(key2, s["patches"], Guards(color="project", downsample_prob=0.5, ...))

Geometry (Doersch et al. 2015): the 3x3 grid has cells of ``patch`` pixels separated by ``gap``
pixels, so patches never touch (no low-level continuity to read); the grid sits at a uniform
random position in the image, and each patch moves by its own uniform jitter in
``[-jitter, jitter]`` on both axes (so lines cannot be followed across the gap). Everything stays
inside an image of side ``min_side = 3 * patch + 2 * gap + 2 * jitter``.

Per-image augmentation before cutting: a horizontal flip (probability 1/2; no relabelling,
the arrangement is drawn afterwards). For tables with rotations, every patch of a sample is then
turned by the label's rotation (``rot90``, counter-clockwise): the same patches a turn of the
whole image would give, cut at the turned cells (the tables are closed under a turn), but the
arrangement part of the label names the cells in the photograph's upright frame — see
`context.arrangements` for why.
Per-patch guards after cutting (`augment`): chromatic aberration (colour projection / dropping /
gray), random downsampling, and the random aperture of the triple task (two of three patches
seen through a random square window, the rest filled with the patch's mean colour).

Every random choice comes from the ``key`` argument, which the task folds from the training step:
the same step sees the same patches, so a resumed run continues exactly.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from livermore_brain.context.arrangements import Arrangements

COLOR_GUARDS = ("none", "project", "drop", "gray")
FRAMES = ("upright", "turned")  # which frame names a rotated sample's arrangement (`sample`)
# Doersch's "projection": remove each pixel's component along the green-magenta axis, where
# lenses' chromatic aberration shows (green and magenta shifted toward gray).
GREEN_MAGENTA = np.array([-1.0, 2.0, -1.0], np.float32) / np.sqrt(6.0)


@dataclasses.dataclass(frozen=True)
class Geometry:
  patch: int
  gap: int
  jitter: int

  def __post_init__(self):
    if self.patch < 1 or self.gap < 0 or self.jitter < 0:
      raise ValueError(f"need patch >= 1, gap >= 0, jitter >= 0; got {self}")

  @property
  def pitch(self) -> int:
    return self.patch + self.gap

  @property
  def span(self) -> int:
    return 3 * self.patch + 2 * self.gap

  @property
  def min_side(self) -> int:
    return self.span + 2 * self.jitter


@dataclasses.dataclass(frozen=True)
class Guards:
  color: str = "project"  # none | project | drop | gray (3-channel images only)
  downsample_prob: float = 0.0  # per patch: downsample then upsample back
  downsample_min: float = 0.4  # ... by a factor uniform in [downsample_min, 1] per side
  aperture: int = 0  # triple: two of the three patches keep a window of side in [P - aperture, P]

  def __post_init__(self):
    if self.color not in COLOR_GUARDS:
      raise ValueError(f"color guard {self.color!r}: choose one of {', '.join(COLOR_GUARDS)}")
    if not 0.0 <= self.downsample_prob <= 1.0 or not 0.0 < self.downsample_min <= 1.0:
      raise ValueError(f"need downsample_prob in [0, 1] and downsample_min in (0, 1]: {self}")


def _rotate(images: jax.Array, k: jax.Array, rotations: int) -> jax.Array:
  """Per-image ``rot90`` by ``k[b]`` (counter-clockwise, numpy's convention)."""
  if rotations == 1:
    return images
  out = images
  for r in range(1, rotations):
    rot = jnp.rot90(images, r, axes=(1, 2))
    out = jnp.where((k == r)[:, None, None, None], rot, out)
  return out


def sample(
  key: jax.Array,
  images: jax.Array,
  table: Arrangements,
  geom: Geometry,
  flip: bool = True,
  frame: str = "upright",
) -> dict[str, jax.Array]:
  """One arrangement per image of ``images`` ``(B, H, W, C)``; see the module docstring.

  ``frame`` (tables with rotations): the frame that names the arrangement part of the label —
  ``upright``, the cells cut from the photograph, or ``turned``, the cells of the turned image
  those patches are (`Arrangements.turn_map`). The patches are the same either way; ``upright``
  (returned as ``base``) is always the photograph's cells."""
  if frame not in FRAMES:
    raise ValueError(f"frame {frame!r}: choose one of {', '.join(FRAMES)}")
  b, h, w, c = images.shape
  if min(h, w) < geom.min_side:
    raise ValueError(
      f"images of {h}x{w} are too small for patch {geom.patch}, gap {geom.gap}, jitter "
      f"{geom.jitter}: need at least {geom.min_side} pixels a side"
    )
  k_flip, k_rot, k_arr, k_oy, k_ox, k_jit = jax.random.split(key, 6)
  flipped = jax.random.bernoulli(k_flip, 0.5, (b,)) if flip else jnp.zeros((b,), bool)
  images = jnp.where(flipped[:, None, None, None], images[:, :, ::-1], images)
  rot = jax.random.randint(k_rot, (b,), 0, table.rotations)
  base = jax.random.randint(k_arr, (b,), 0, table.num_base)
  cells = jnp.asarray(table.cells)[base]  # (B, K, 2)
  j = geom.jitter
  oy = jax.random.randint(k_oy, (b, 1), j, h - geom.span - j + 1)
  ox = jax.random.randint(k_ox, (b, 1), j, w - geom.span - j + 1)
  jit = jax.random.randint(k_jit, (b, table.num_patches, 2), -j, j + 1)
  corner = jnp.stack([oy, ox], -1) + cells * geom.pitch + jit  # (B, K, 2)
  p = geom.patch

  def cut(img, yx):
    return jax.lax.dynamic_slice(img, (yx[0], yx[1], 0), (p, p, c))

  patches = jax.vmap(lambda img, yxs: jax.vmap(lambda yx: cut(img, yx))(yxs))(images, corner)
  k = table.num_patches
  turned = _rotate(patches.reshape(b * k, p, p, c), jnp.repeat(rot, k), table.rotations)
  patches = turned.reshape(b, k, p, p, c)
  named = base
  if frame == "turned" and table.rotations > 1:
    named = jnp.asarray(table.turn_map())[rot, base]
  return {
    "patches": patches,
    "label": table.label(named, rot).astype(jnp.int32),
    "base": base,
    "rotation": rot,
    "flipped": flipped,
    "corner": corner.astype(jnp.int32),
  }


def _color(key, x, mode: str):
  """Chromatic-aberration guard on patches ``(N, P, P, 3)``."""
  if mode == "none" or x.shape[-1] != 3:
    return x
  if mode == "project":
    g = jnp.asarray(GREEN_MAGENTA)
    return x - jnp.einsum("...c,c->...", x, g)[..., None] * g
  if mode == "gray":
    y = jnp.einsum("...c,c->...", x, jnp.array([0.299, 0.587, 0.114], x.dtype))
    return jnp.repeat(y[..., None], 3, axis=-1)
  # drop: keep one random channel per patch, the others become faint Gaussian noise around its
  # mean (std 1/100 of the kept channel's, as Doersch et al.).
  k_keep, k_noise = jax.random.split(key)
  keep = jax.random.randint(k_keep, (x.shape[0],), 0, 3)
  kept = jnp.take_along_axis(x, keep[:, None, None, None], axis=-1)
  mean = jnp.mean(kept, axis=(1, 2, 3), keepdims=True)
  std = jnp.std(kept, axis=(1, 2, 3), keepdims=True)
  noise = mean + 0.01 * std * jax.random.normal(k_noise, x.shape, x.dtype)
  mask = jax.nn.one_hot(keep, 3, dtype=bool)[:, None, None, :]
  return jnp.where(mask, x, noise)


def _downsample(key, x, prob: float, smallest: float):
  """With probability ``prob`` per patch, resample to a factor ``f ~ U[smallest, 1]`` of its
  side (antialiased) and back up: the pixelation of a distant object."""
  if prob <= 0:
    return x
  n, p = x.shape[0], x.shape[1]
  k_on, k_f = jax.random.split(key)
  on = jax.random.bernoulli(k_on, prob, (n,))
  f = jnp.where(on, jax.random.uniform(k_f, (n,), minval=smallest, maxval=1.0), 1.0)

  def one(img, f):
    s = jnp.stack([f, f])
    small = jax.image.scale_and_translate(
      img, img.shape, (0, 1), s, jnp.zeros(2), "linear", antialias=True
    )
    # ``small`` holds the image in its top-left f*P pixels; scale that region back to P.
    m = jnp.maximum(jnp.ceil(f * p), 1.0)
    big = jax.image.scale_and_translate(
      small, img.shape, (0, 1), jnp.stack([p / m, p / m]), jnp.zeros(2), "linear", antialias=False
    )
    return jnp.where(f < 1.0, big, img)

  return jax.vmap(one)(x, f)


def _aperture(key, patches, size: int):
  """Triple task: two of the three patches (the third chosen at random) are seen through one
  random square window of side in ``[P - size, P]``; outside it, the patch's mean colour."""
  if size <= 0 or patches.shape[1] < 3:
    return patches
  b, k, p = patches.shape[:3]
  k_open, k_side, k_y, k_x = jax.random.split(key, 4)
  spared = jax.random.randint(k_open, (b,), 0, k)
  side = jax.random.randint(k_side, (b,), max(p - size, 1), p + 1)
  y0 = jnp.floor(jax.random.uniform(k_y, (b,)) * (p - side + 1)).astype(jnp.int32)
  x0 = jnp.floor(jax.random.uniform(k_x, (b,)) * (p - side + 1)).astype(jnp.int32)
  r = jnp.arange(p)
  iny = (r[None] >= y0[:, None]) & (r[None] < (y0 + side)[:, None])  # (B, P)
  inx = (r[None] >= x0[:, None]) & (r[None] < (x0 + side)[:, None])
  window = iny[:, :, None] & inx[:, None, :]  # (B, P, P)
  masked = jnp.arange(k)[None] != spared[:, None]  # (B, K)
  keep = window[:, None, :, :, None] | ~masked[:, :, None, None, None]
  mean = jnp.mean(patches, axis=(2, 3), keepdims=True)
  return jnp.where(keep, patches, mean)


def augment(key: jax.Array, patches: jax.Array, guards: Guards) -> jax.Array:
  """The per-patch guards against trivial solutions on ``(B, K, P, P, C)`` patches."""
  b, k = patches.shape[:2]
  k_col, k_ds, k_ap = jax.random.split(key, 3)
  x = patches.reshape(b * k, *patches.shape[2:])
  x = _color(k_col, x, guards.color)
  x = _downsample(k_ds, x, guards.downsample_prob, guards.downsample_min)
  x = x.reshape(patches.shape)
  return _aperture(k_ap, x, guards.aperture)
