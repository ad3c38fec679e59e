"""The YFCC100M dataset file as released: parsing, image paths, and a per-process line index.

The file is tab-separated, one line per photo or video, in one of two layouts:

* 24 fields (the paper's Fig. 1): photo id, photo hash, user nsid, user nickname, date taken,
  date uploaded (unix time), capture device, title, description, user tags (comma separated),
  machine tags, longitude, latitude, accuracy, page URL, download URL, license name, license URL,
  server id, farm id, secret, secret original, extension original, marker (0 photo, 1 video);
* 25 fields (the Multimedia Commons ``yfcc100m_dataset``): a line number, then the 24 above.

Text fields are URL-encoded (``+`` for space, ``%XX``); tags are split on ``,`` before decoding.
Images live in the Multimedia Commons layout ``<image_dir>/<hash[0:3]>/<hash[3:6]>/<hash>.jpg`` or
flat as ``<image_dir>/<photo id>.jpg``. No TensorFlow here (the stats tool stays light).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import string
from array import array
from urllib.parse import unquote_plus

import numpy as np

FIELDS = (
  "photo_id",
  "photo_hash",
  "user_nsid",
  "user_nickname",
  "date_taken",
  "date_uploaded",
  "capture_device",
  "title",
  "description",
  "user_tags",
  "machine_tags",
  "longitude",
  "latitude",
  "accuracy",
  "page_url",
  "download_url",
  "license_name",
  "license_url",
  "server_id",
  "farm_id",
  "secret",
  "secret_original",
  "extension_original",
  "marker",
)
_ENCODED = ("user_nickname", "capture_device", "title", "description", "license_name")


class MalformedLine(ValueError):
  """A metadata line that cannot be a YFCC100M record (field count, encoding, id, marker)."""


@dataclasses.dataclass(frozen=True)
class Record:
  """One parsed metadata line; text fields URL-decoded, empty strings where absent."""

  line_number: int | None  # the 25-field layout's leading line number
  photo_id: int
  photo_hash: str
  user_nsid: str
  user_nickname: str
  date_taken: str
  date_uploaded: int | None  # unix time
  capture_device: str
  title: str
  description: str
  user_tags: tuple[str, ...]
  machine_tags: tuple[str, ...]
  longitude: float | None
  latitude: float | None
  accuracy: int | None
  page_url: str
  download_url: str
  license_name: str
  license_url: str
  extension: str
  is_video: bool

  def relative_paths(self) -> list[str]:
    """Candidate image paths under the image dir, hash layout first."""
    paths = []
    h = self.photo_hash
    if len(h) >= 6 and h.isalnum():
      paths.append(os.path.join(h[0:3], h[3:6], f"{h}.jpg"))
    paths.append(f"{self.photo_id}.jpg")
    return paths


def _split(line: str | bytes) -> list[str]:
  if isinstance(line, bytes):
    try:
      line = line.decode("utf-8")
    except UnicodeDecodeError as e:
      raise MalformedLine(f"not UTF-8 ({e.reason})") from None
  fields = line.rstrip("\r\n").split("\t")
  if len(fields) not in (24, 25):
    raise MalformedLine(f"{len(fields)} tab-separated fields (expected 24 or 25)")
  return fields


def _tags(field: str) -> tuple[str, ...]:
  return tuple(t for t in (unquote_plus(x).strip() for x in field.split(",")) if t)


def _num(text: str, kind):
  try:
    return kind(text) if text else None
  except ValueError:
    return None


def parse_line(line: str | bytes) -> Record:
  """Parse one metadata line (either layout); raises `MalformedLine`."""
  fields = _split(line)
  line_number = None
  if len(fields) == 25:
    if not fields[0].isdigit():
      raise MalformedLine(f"line number {fields[0][:20]!r} is not a number")
    line_number = int(fields[0])
    fields = fields[1:]
  f = dict(zip(FIELDS, fields))
  if not f["photo_id"].isdigit():
    raise MalformedLine(f"photo id {f['photo_id'][:20]!r} is not a number")
  if f["marker"] not in ("0", "1"):
    raise MalformedLine(f"photo/video marker {f['marker'][:20]!r} is not 0 or 1")
  dec = {k: unquote_plus(f[k]) for k in _ENCODED}
  return Record(
    line_number=line_number,
    photo_id=int(f["photo_id"]),
    photo_hash=f["photo_hash"].strip(),
    user_nsid=f["user_nsid"],
    date_taken=f["date_taken"],
    date_uploaded=_num(f["date_uploaded"], int),
    user_tags=_tags(f["user_tags"]),
    machine_tags=_tags(f["machine_tags"]),
    longitude=_num(f["longitude"], float),
    latitude=_num(f["latitude"], float),
    accuracy=_num(f["accuracy"], int),
    page_url=f["page_url"],
    download_url=f["download_url"],
    license_url=f["license_url"],
    extension=f["extension_original"],
    is_video=f["marker"] == "1",
    **dec,
  )


def words(record: Record) -> tuple[str, ...]:
  """The photo's text tags: its user tags, then its title words, lowercased, each once.

  A user tag is one word (inner whitespace becomes ``_``: ``new york`` -> ``new_york``); title
  words are split on whitespace with surrounding punctuation stripped.
  """
  out = ["_".join(t.lower().split()) for t in record.user_tags]
  out += [w.strip(string.punctuation) for w in record.title.lower().split()]
  return tuple(dict.fromkeys(w for w in out if w))


def find_image(image_dir: str, record: Record) -> str | None:
  """The first existing candidate path of ``record``'s image, or None."""
  for rel in record.relative_paths():
    path = os.path.join(image_dir, rel)
    if os.path.exists(path):
      return path
  return None


@dataclasses.dataclass
class LineIndex:
  """Byte offsets and lengths of one process's photo lines, and what was skipped on the way."""

  offsets: np.ndarray  # int64
  lengths: np.ndarray  # int32
  skipped_videos: int
  malformed_line: int
  lines: int  # non-empty lines of this process (photos + videos + malformed)


def build_index(path: str, process_index: int = 0, process_count: int = 1) -> LineIndex:
  """One pass over the file; non-empty line ``n`` (0-based) belongs to process ``n % count``.

  Only this process's lines are parsed, so malformed lines and videos are counted once over all
  processes, and the union of the shards is every photo line of the file.
  """
  if path.endswith((".bz2", ".gz", ".xz")):
    raise ValueError(
      f"{path} is compressed; the pipeline needs random access: decompress it first "
      f"(e.g. `bunzip2 -k {path}`); experiments.yfcc_stats reads compressed files directly"
    )
  offsets, lengths, videos, malformed, lines = scan_lines(path, process_index, process_count)
  return LineIndex(offsets, lengths, videos, malformed, lines)


def scan_lines(path: str, process_index: int = 0, process_count: int = 1, videos: bool = False):
  """``(offsets, lengths, others, malformed, lines)``: byte offsets and lengths of this process's
  photo lines (video lines with ``videos``), how many of its lines were of the other kind and
  malformed, and its non-empty lines; non-empty line ``n`` belongs to process ``n % count``."""
  offsets, lengths = array("q"), array("i")
  others = malformed = lines = ordinal = pos = 0
  with open(path, "rb") as f:
    for raw in f:
      start, pos = pos, pos + len(raw)
      if not raw.strip():
        continue
      mine = ordinal % process_count == process_index
      ordinal += 1
      if not mine:
        continue
      lines += 1
      try:
        is_video = _marker(raw)
      except MalformedLine:
        malformed += 1
        continue
      if is_video == videos:
        offsets.append(start)
        lengths.append(len(raw))
      else:
        others += 1
  offsets, lengths = (
    np.frombuffer(offsets, np.int64).copy(),
    np.frombuffer(lengths, np.int32).copy(),
  )
  return offsets, lengths, others, malformed, lines


def _marker(raw: bytes) -> bool:
  """Cheap validation of one line (same rules as `parse_line`); True for a video."""
  fields = _split(raw)
  if len(fields) == 25:
    if not fields[0].isdigit():
      raise MalformedLine("bad line number")
    fields = fields[1:]
  if not fields[0].isdigit():
    raise MalformedLine("bad photo id")
  if fields[-1] not in ("0", "1"):
    raise MalformedLine("bad marker")
  return fields[-1] == "1"


def cached_index(path: str, process_index: int, process_count: int, cache_dir: str | None):
  """`build_index`, saved to / loaded from ``cache_dir`` (keyed by file, size, mtime, shard)."""
  if not cache_dir:
    return build_index(path, process_index, process_count)
  st = os.stat(path)
  key = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{process_index}|{process_count}"
  name = f"{os.path.basename(path)}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
  cache = os.path.join(cache_dir, name)
  if os.path.exists(cache):
    with np.load(cache) as z:
      return LineIndex(
        z["offsets"], z["lengths"], int(z["videos"]), int(z["malformed"]), int(z["lines"])
      )
  index = build_index(path, process_index, process_count)
  os.makedirs(cache_dir, exist_ok=True)
  tmp = f"{cache}.tmp{os.getpid()}.npz"
  np.savez(
    tmp,
    offsets=index.offsets,
    lengths=index.lengths,
    videos=index.skipped_videos,
    malformed=index.malformed_line,
    lines=index.lines,
  )
  os.replace(tmp, cache)
  return index


def iter_records(path: str, counts: dict | None = None):
  """Stream ``Record``s of a (possibly .bz2/.gz/.xz) file; malformed lines counted, not raised."""
  import bz2
  import gzip
  import lzma

  opener = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open}.get(
    os.path.splitext(path)[1], open
  )
  counts = {} if counts is None else counts
  with opener(path, "rb") as f:
    for raw in f:
      if not raw.strip():
        continue
      counts["lines"] = counts.get("lines", 0) + 1
      try:
        yield parse_line(raw)
      except MalformedLine:
        counts["malformed_line"] = counts.get("malformed_line", 0) + 1
