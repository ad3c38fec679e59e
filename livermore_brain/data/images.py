"""Decoding with a reason for every failure, and the paper's crop + per-image normalization.

Pure numpy / Pillow (runs inside ``tf.numpy_function``; Pillow releases the GIL while decoding and
resampling, so tf.data's parallel calls decode in parallel).

Stage 1 (`crop`): an encoded file or an in-memory array -> ``uint8 (H, W, C)`` (H != W allowed):
* ``center`` (paper §4): the largest centred box of aspect W/H (for a square output: the central
  square), resampled to H x W in one antialiased resample, after JPEG DCT-domain downscaling
  (``draft``). For H = W this is "scale the smallest side to S and take the centre SxS".
* ``random``: that box scaled by ``u ~ U[min_scale, 1]``, at a uniformly random position,
  resampled to H x W. The randomness comes from ``rng`` (the pipeline seeds it from
  ``(seed, global example index)``).
* ``resize``: the whole image resampled to H x W (aspect not kept; e.g. 28x28 digits).
Stage 2 (`normalize`): ``x / 255``, minus the image mean, divided by ``std + eps`` (one mean and
std per image, over pixels and channels).
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

# Reason codes carried through tf.data (0 = fine). Order is part of the batch format.
# The last three are items whose image may be fine but whose other fields a task needs are not:
# a label missing (-1) or outside the class list, or a photo with no tags (issue #17).
# Clips (`video`): a video with no decodable frame, or fewer frames than one clip spans.
REASONS = (
  "ok", "missing_file", "empty_file", "not_image", "decode_error", "read_error",
  "missing_label", "bad_label", "no_tags", "empty_video", "too_short",
)  # fmt: skip
CODE = {r: i for i, r in enumerate(REASONS)}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")


class BadImage(Exception):
  """An item that cannot be used; ``reason`` is one of `REASONS` (not "ok")."""

  def __init__(self, reason: str, detail: str = ""):
    super().__init__(f"{reason}: {detail}" if detail else reason)
    self.reason = reason


def read_file(path: str) -> bytes:
  try:
    with open(path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    raise BadImage("missing_file", path) from None
  except OSError as e:
    raise BadImage("read_error", f"{path}: {e}") from None
  if not data:
    raise BadImage("empty_file", path)
  return data


def open_image(data: bytes) -> Image.Image:
  """A lazily decoded Pillow image (decoding errors surface in `crop`)."""
  if not data:
    raise BadImage("empty_file")
  try:
    return Image.open(io.BytesIO(data))
  except UnidentifiedImageError:
    raise BadImage("not_image") from None
  except Exception as e:  # noqa: BLE001 - any parser failure is a bad file, never a crash
    raise BadImage("decode_error", repr(e)) from None


def load_path(path: str) -> Image.Image:
  return open_image(read_file(path))


def list_images(root: str, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[str]:
  """Every JPEG/PNG/GIF/BMP (``extensions``) under ``root``, recursively, sorted (deterministic)."""
  found = []
  ext = tuple(e.lower() for e in extensions)
  for d, dirs, files in os.walk(root):
    dirs.sort()
    for name in sorted(files):
      if name.lower().endswith(ext):
        found.append(os.path.join(d, name))
  return found


def _to_mode(img: Image.Image, mode: str) -> Image.Image:
  if img.mode == mode:
    return img
  if img.mode.startswith("I;16") or img.mode in ("I", "F"):  # high bit depth: rescale, not clip
    a = np.asarray(img, np.float64)
    a = a / 257.0 if img.mode.startswith("I;16") else 255.0 * (a - a.min()) / max(np.ptp(a), 1e-9)
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
  elif img.mode not in ("RGB", "L"):
    img = img.convert("RGBA").convert("RGB") if "A" in img.mode or img.mode == "P" else img
  return img.convert(mode)


class Pyramid:
  """An in-memory image with 2x, 4x, ... reduced copies: crops resample from the smallest level
  that still has enough pixels (the in-memory analogue of JPEG ``draft``)."""

  def __init__(self, obj, min_side: int = 16):
    img = obj if isinstance(obj, Image.Image) else Image.fromarray(np.asarray(obj))
    if img.mode not in ("RGB", "L"):
      img = _to_mode(img, "RGB")
    img.load()
    self.size = img.size
    self.levels = [img]
    while min(self.levels[-1].size) >= 2 * min_side:
      self.levels.append(self.levels[-1].reduce(2))
    self.nbytes = sum(len(im.getbands()) * im.size[0] * im.size[1] for im in self.levels)

  def level_for(self, box_w: float, box_h: float, out_w: int, out_h: int) -> Image.Image:
    """The smallest level on which a ``box_w x box_h`` box (level-0 pixels) still spans at least
    ``out_w x out_h`` pixels."""
    best = self.levels[0]
    for im in self.levels[1:]:
      f = im.size[0] / self.size[0]
      if box_w * f < out_w or box_h * f < out_h:
        break
      best = im
    return best


def _hw(size) -> tuple[int, int]:
  """``S`` or ``(H, W)`` -> ``(H, W)``."""
  if np.isscalar(size):
    return int(size), int(size)
  h, w = size
  return int(h), int(w)


def crop_box(w: int, h: int, crop: str, rng, min_scale: float, aspect: float = 1.0):
  """``(x0, y0, box_w, box_h)`` of the box to resample, in pixels of a ``w x h`` image;
  ``aspect`` = output width / height."""
  if crop == "resize":
    return 0.0, 0.0, float(w), float(h)
  if w >= h * aspect:  # the largest box of this aspect: full height
    bh = float(h)
    bw = bh * aspect
  else:
    bw = float(w)
    bh = bw / aspect
  if crop == "center":
    return (w - bw) / 2.0, (h - bh) / 2.0, bw, bh
  u = rng.uniform(min_scale, 1.0)
  bw, bh = bw * u, bh * u
  return rng.uniform(0.0, w - bw), rng.uniform(0.0, h - bh), bw, bh


def _as_image(obj):
  if isinstance(obj, (Image.Image, Pyramid)):
    return obj
  a = np.asarray(obj)
  if a.ndim == 3 and a.shape[2] == 1:
    a = a[:, :, 0]
  return Image.fromarray(a)


def crop(
  obj,
  size,
  channels: int,
  crop_mode: str,
  rng=None,
  min_scale: float = 0.25,
  grayscale: bool = False,
) -> np.ndarray:
  """Stage 1: a Pillow image (lazy), a `Pyramid` or a uint8 array -> ``uint8 (H, W, C)``.

  ``size``: ``S`` (square) or ``(H, W)``; ``crop_mode``: center, random or resize (module doc).
  """
  mode = "L" if (grayscale or channels == 1) else "RGB"
  oh, ow = _hw(size)
  try:
    obj = _as_image(obj)
    w, h = obj.size
    if w < 1 or h < 1:
      raise BadImage("decode_error", "empty image")
    x0, y0, bw, bh = crop_box(w, h, crop_mode, rng, min_scale, ow / oh)
    img = obj.level_for(bw, bh, ow, oh) if isinstance(obj, Pyramid) else obj
    if img.format == "JPEG" and bw > ow and bh > oh:  # decode at 1/2, 1/4, 1/8 scale when enough
      img.draft(mode, (int(np.ceil(ow * w / bw)), int(np.ceil(oh * h / bh))))
    sx, sy = img.size[0] / w, img.size[1] / h
    x0, y0, bw, bh = x0 * sx, y0 * sy, bw * sx, bh * sy
    if img.mode not in ("RGB", "L"):
      img = _to_mode(img, mode)
    box = (x0, y0, x0 + bw, y0 + bh)
    out = img.resize((ow, oh), Image.Resampling.BILINEAR, box=box)
    out = np.asarray(_to_mode(out, mode), np.uint8)
  except BadImage:
    raise
  except Exception as e:  # noqa: BLE001 - truncated data, decompression bombs, odd modes
    raise BadImage("decode_error", repr(e)) from None
  if out.ndim == 2:
    out = out[:, :, None]
  if channels == 3 and out.shape[2] == 1:
    out = np.repeat(out, 3, axis=2)
  return np.ascontiguousarray(out)


def to_array(obj, channels: int | None = None) -> np.ndarray:
  """Decode without resampling -> ``uint8 (h, w, C)``; ``channels`` None keeps gray images gray
  (C = 1) and makes everything else RGB (C = 3)."""
  img = _as_image(obj)
  if isinstance(img, Pyramid):
    img = img.levels[0]
  h, w = img.size[1], img.size[0]
  if channels is None:
    channels = 1 if img.mode in ("1", "L", "I", "F") or img.mode.startswith("I;16") else 3
  return crop(img, (h, w), channels, "resize")


def pyramid(obj, min_side: int = 16) -> Pyramid:
  """Fully decode into a `Pyramid` (kept in memory: builtin images, the decoded cache)."""
  try:
    return Pyramid(obj, min_side)
  except BadImage:
    raise
  except Exception as e:  # noqa: BLE001 - truncated data etc.
    raise BadImage("decode_error", repr(e)) from None


def normalize(x: np.ndarray, eps: float) -> np.ndarray:
  """Stage 2 on ``uint8 (..., H, W, C)``: float32, zero mean and unit std (+eps) per image."""
  x = np.asarray(x, np.float32) / 255.0
  axes = (-3, -2, -1)
  x = x - x.mean(axis=axes, keepdims=True)
  return x / (x.std(axis=axes, keepdims=True) + np.float32(eps))


def to_uint8(x: np.ndarray) -> np.ndarray:
  """Convert a bool / float / other-int image array to uint8 (for the builtin images)."""
  x = np.asarray(x)
  if x.dtype == np.uint8:
    return x
  if x.dtype == bool:
    return x.astype(np.uint8) * 255
  x = x.astype(np.float64)
  lo, hi = float(x.min()), float(x.max())
  if lo >= 0.0 and hi <= 1.0:
    return np.round(x * 255).astype(np.uint8)
  return np.round(255 * (x - lo) / max(hi - lo, 1e-9)).astype(np.uint8)
