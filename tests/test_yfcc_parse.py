"""YFCC100M metadata parsing and the per-process line index, on a fixture with known contents."""

from __future__ import annotations

import bz2

import pytest

from livermore_brain.data import fixtures, yfcc


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
  return fixtures.write_yfcc_fixture(str(tmp_path_factory.mktemp("yfcc")))


def _lines(path):
  with open(path, "rb") as f:
    return [raw for raw in f if raw.strip()]


@pytest.mark.parametrize("layout", [24, 25])
def test_parse_decodes_fields(fx, layout):
  first = yfcc.parse_line(_lines(fx["metadata"][layout])[0])
  assert first.line_number == (0 if layout == 25 else None)
  assert first.photo_id == 1001
  assert first.photo_hash == fixtures.photo_hash(1001)
  assert first.user_nsid == "11@N01" and first.user_nickname == "nick 11"
  assert first.title == "Sunset over the bay"
  assert first.description == 'A "quoted" line\nand more'
  assert first.user_tags == ("sunset", "new york", "beach")
  assert first.longitude == pytest.approx(-73.642852) and first.latitude == pytest.approx(43.308483)
  assert first.accuracy == 16 and first.date_uploaded == 1326631741
  assert first.date_taken == "2012-01-14 20:04:19.0"
  assert first.capture_device == "Canon PowerShot A1200"
  assert first.license_name == "Attribution-ShareAlike License"
  assert first.license_url.endswith("/by-sa/2.0/") and not first.is_video
  cafe = yfcc.parse_line(_lines(fx["metadata"][layout])[3])
  assert cafe.title == "Café au lait" and cafe.description == "Milk, coffee"
  assert cafe.user_tags == ("café", "food", "sunset")
  assert yfcc.parse_line(_lines(fx["metadata"][layout])[5]).is_video
  h = fixtures.photo_hash(1001)
  assert first.relative_paths() == [f"{h[:3]}/{h[3:6]}/{h}.jpg", "1001.jpg"]


@pytest.mark.parametrize(
  "line",
  [
    b"1\t2\t3",  # wrong field count
    "\t".join(["x"] * 24).encode(),  # photo id not a number
    ("\t".join(["1"] + ["a"] * 22 + ["7"])).encode(),  # marker not 0/1
    ("\t".join(["1"] + ["a"] * 22 + ["0"])).encode().replace(b"a", b"\xff", 1),  # not UTF-8
    ("\t".join(["n", "1"] + ["a"] * 22 + ["0"])).encode(),  # 25 fields, line number not a number
  ],
)
def test_malformed_lines_raise(line):
  with pytest.raises(yfcc.MalformedLine):
    yfcc.parse_line(line)


@pytest.mark.parametrize("layout", [24, 25])
def test_index_counts_and_shards(fx, layout):
  path = fx["metadata"][layout]
  full = yfcc.build_index(path)
  assert (len(full.offsets), full.skipped_videos, full.malformed_line, full.lines) == (12, 1, 2, 15)
  ids = [
    yfcc.parse_line(yfcc_line(path, o, n)).photo_id for o, n in zip(full.offsets, full.lengths)
  ]
  assert ids == list(fixtures.PHOTOS)
  shards = [yfcc.build_index(path, p, 3) for p in range(3)]
  offsets = [set(s.offsets.tolist()) for s in shards]
  assert sum(len(o) for o in offsets) == 12 and set().union(*offsets) == set(full.offsets.tolist())
  assert sum(s.skipped_videos for s in shards) == 1 and sum(s.malformed_line for s in shards) == 2
  assert [s.lines for s in shards] == [5, 5, 5]


def yfcc_line(path, offset, length):
  with open(path, "rb") as f:
    f.seek(int(offset))
    return f.read(int(length))


def test_index_cache_roundtrip(fx, tmp_path):
  path = fx["metadata"][25]
  a = yfcc.cached_index(path, 1, 2, str(tmp_path))
  b = yfcc.cached_index(path, 1, 2, str(tmp_path))  # from the cache file
  assert len(list(tmp_path.iterdir())) == 1
  assert a.offsets.tolist() == b.offsets.tolist() and a.malformed_line == b.malformed_line


def test_iter_records_reads_bz2(fx, tmp_path):
  src = fx["metadata"][24]
  dst = tmp_path / "yfcc100m_dataset.bz2"
  with open(src, "rb") as f:
    dst.write_bytes(bz2.compress(f.read()))
  counts = {}
  recs = list(yfcc.iter_records(str(dst), counts))
  assert len(recs) == 13 and counts == {"lines": 15, "malformed_line": 2}
  with pytest.raises(ValueError, match="decompress"):
    yfcc.build_index(str(dst))
