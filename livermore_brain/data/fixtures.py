"""A small YFCC100M-format fixture (metadata in both layouts + images, good and bad) for tests.

`write_yfcc_fixture(root)` writes::

    root/yfcc_24.tsv    24-field lines (the paper's Fig. 1 layout)
    root/yfcc_25.tsv    the same lines with a leading line number (Multimedia Commons layout)
    root/images/...     <hash[0:3]>/<hash[3:6]>/<hash>.jpg, and one flat <photo id>.jpg

15 non-empty lines: 12 photos (8 decodable; one truncated JPEG, one zero-byte file, one text
file, one missing file), 1 video, 1 line with the wrong field count and 1 that is not UTF-8.
It returns a dict describing what was written (ids, hashes, expected reasons) so tests can
compare against numbers fixed by hand.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from PIL import Image

# photo id -> (user, title, description, tags, longitude, latitude, kind); text URL-encoded.
PHOTOS = {
  1001: ("11@N01", "Sunset+over+the+bay", "A+%22quoted%22+line%0Aand+more", "sunset,new+york,beach",
         "-73.642852", "43.308483", "good"),
  1002: ("11@N01", "IMG_1234", "", "sunset,beach", "", "", "good"),
  1003: ("22@N02", "", "", "", "", "", "good"),
  1004: ("22@N02", "Caf%C3%A9+au+lait", "Milk%2C+coffee", "caf%C3%A9,food,sunset", "2.35", "48.85",
         "good"),
  1005: ("33@N03", "Flat+layout", "", "nyc", "", "", "flat"),
  1006: ("33@N03", "Gray+one", "One+two+three+four", "beach", "", "", "gray"),
  1007: ("44@N04", "DSC01234", "", "", "", "", "good"),
  1008: ("44@N04", "Last+good", "x", "sunset,nyc", "", "", "good"),
  1009: ("55@N05", "Truncated", "", "broken", "", "", "truncated"),
  1010: ("55@N05", "Empty", "", "", "", "", "empty"),
  1011: ("66@N06", "Not+an+image", "", "", "", "", "text"),
  1012: ("66@N06", "Missing", "", "", "", "", "missing"),
}  # fmt: skip
VIDEO_ID = 2001
REASONS = {1009: "decode_error", 1010: "empty_file", 1011: "not_image", 1012: "missing_file"}


def photo_hash(photo_id: int) -> str:
  return hashlib.md5(str(photo_id).encode()).hexdigest()


def _fields(photo_id, user, title, desc, tags, lon, lat, marker="0") -> list[str]:
  h = photo_hash(photo_id)
  return [
    str(photo_id), h, user, "nick+" + user.split("@")[0], "2012-01-14 20:04:19.0", "1326631741",
    "Canon+PowerShot+A1200", title, desc, tags, "", lon, lat, "16" if lon else "",
    f"http://www.flickr.com/photos/{user}/{photo_id}/",
    f"http://farm8.staticflickr.com/7152/{photo_id}_2a785d3baf.jpg",
    "Attribution-ShareAlike+License", "http://creativecommons.org/licenses/by-sa/2.0/",
    "7152", "8", "2a785d3baf", "0ac9dba756", "jpg", marker,
  ]  # fmt: skip


def _image(photo_id: int, gray: bool = False) -> Image.Image:
  """A smooth, photo-like picture that differs per id (gradients + blobs), 64x48."""
  rng = np.random.default_rng(photo_id)
  y, x = np.mgrid[0:48, 0:64].astype(np.float64)
  chans = []
  for _ in range(3):
    a, b, c = rng.uniform(-1, 1, 3)
    cx, cy, s = rng.uniform(0, 64), rng.uniform(0, 48), rng.uniform(6, 20)
    v = (
      128
      + 60 * (a * x / 64 + b * y / 48)
      + 80 * c * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / s**2)
    )
    chans.append(v)
  arr = np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)
  img = Image.fromarray(arr)
  return img.convert("L") if gray else img


def write_yfcc_fixture(root: str) -> dict:
  image_dir = os.path.join(root, "images")
  os.makedirs(image_dir, exist_ok=True)
  lines = []
  for pid, (user, title, desc, tags, lon, lat, kind) in PHOTOS.items():
    lines.append("\t".join(_fields(pid, user, title, desc, tags, lon, lat)).encode())
    h = photo_hash(pid)
    path = os.path.join(image_dir, h[0:3], h[3:6], f"{h}.jpg")
    if kind == "flat":
      path = os.path.join(image_dir, f"{pid}.jpg")
    if kind == "missing":
      continue
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if kind in ("good", "flat", "gray"):
      _image(pid, gray=kind == "gray").save(path, quality=92)
    elif kind == "truncated":
      _image(pid).save(path, quality=92)
      with open(path, "rb") as f:
        data = f.read()
      with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    elif kind == "empty":
      open(path, "wb").close()
    elif kind == "text":
      with open(path, "w") as f:
        f.write("<html>404 Not Found</html>\n")
  video = _fields(VIDEO_ID, "77@N07", "A+video", "", "video,sunset", "", "", marker="1")
  lines.insert(5, "\t".join(video).encode())
  lines.insert(8, b"1013\tonly\tthree fields")  # wrong field count
  bad_utf8 = _fields(1014, "88@N08", "Bad", "", "", "", "")
  lines.insert(11, "\t".join(bad_utf8).encode().replace(b"Bad", b"B\xff\xfed"))
  paths = {}
  for layout in (24, 25):
    path = os.path.join(root, f"yfcc_{layout}.tsv")
    with open(path, "wb") as f:
      for i, line in enumerate(lines):
        f.write((f"{i}\t".encode() if layout == 25 else b"") + line + b"\n")
      f.write(b"\n")  # a trailing blank line is not data
    paths[layout] = path
  good = [p for p, v in PHOTOS.items() if v[-1] in ("good", "flat", "gray")]
  return dict(image_dir=image_dir, metadata=paths, good_ids=good, bad=dict(REASONS), root=root)


def write_video(path: str, frames: np.ndarray, fps: int = 10, codec: str = "ffv1") -> str:
  """Encode uint8 ``(N, H, W, 3)`` frames with PyAV (``ffv1`` in .mkv: lossless, so a decoded
  frame equals the written one; ``mpeg4`` for .mp4)."""
  import av

  frames = np.asarray(frames, np.uint8)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with av.open(path, "w") as container:
    stream = container.add_stream(codec, rate=int(fps))
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = "yuv420p" if codec == "mpeg4" else "bgr0"
    for a in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path


def counting_frames(n: int, height: int = 16, width: int = 16, offset: int = 0) -> np.ndarray:
  """``n`` flat gray frames whose value encodes their index: frame ``i`` = ``8 (i + offset)``
  (mod 256), so a decoded clip tells which source frames it holds."""
  v = (8 * (np.arange(n) + offset)) % 256
  return np.broadcast_to(v[:, None, None, None], (n, height, width, 3)).astype(np.uint8)


def write_video_folder_fixture(root: str, fps: int = 20) -> dict:
  """Two classes (subfolders ``a``, ``b``) of four counting videos (`counting_frames`, 24 to 40
  frames at ``fps``) plus three bad files: an empty ``.mp4``, a text file named ``.avi`` and a
  3-frame video (too short for clips of 4 or more frames). Returns their paths."""
  good = {
    "a/one.mkv": 24, "a/two.mkv": 30, "b/three.mkv": 40, "b/four.mkv": 26,
  }  # fmt: skip
  out = {"good": [], "bad": {}}
  for rel, n in good.items():
    offset = 10 * len(out["good"])
    out["good"].append(write_video(os.path.join(root, rel), counting_frames(n, offset=offset), fps))
  empty = os.path.join(root, "a", "empty.mp4")
  open(empty, "wb").close()
  text = os.path.join(root, "b", "not_a_video.avi")
  with open(text, "w") as f:
    f.write("<html>404 Not Found</html>\n")
  short = write_video(os.path.join(root, "b", "short.mkv"), counting_frames(3), fps)
  out["bad"] = {empty: "empty_file", text: "decode_error", short: "too_short"}
  return out
