"""experiments.yfcc_stats on the fixture: every number fixed by hand from fixtures.PHOTOS."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from experiments import yfcc_stats
from livermore_brain.data import fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
  return fixtures.write_yfcc_fixture(str(tmp_path_factory.mktemp("yfcc")))


@pytest.mark.parametrize("layout", [24, 25])
def test_exact_numbers(fx, layout):
  s = yfcc_stats.compute(fx["metadata"][layout], top=5, progress_every=0)
  assert (s["lines"], s["malformed_lines"], s["photos"], s["videos"]) == (15, 2, 12, 1)
  assert s["users"] == 6
  # 11 titled photos, 21 title words; IMG_1234 and DSC01234 are camera auto-titles.
  assert s["photos_with_title"] == 11 and s["title_share"] == pytest.approx(11 / 12)
  assert s["auto_title_share"] == pytest.approx(2 / 12)
  assert s["no_title_share"] == pytest.approx(1 / 12)
  assert s["mean_words_per_title"] == pytest.approx(21 / 11)
  # Descriptions: 'A "quoted" line\nand more' (5), "Milk, coffee" (2), 4 words, "x".
  assert s["photos_with_description"] == 4 and s["mean_words_per_description"] == 3.0
  # Tags of photos only (the video's are not counted): 7 tagged photos, 13 tags.
  assert s["photos_with_tags"] == 7 and s["mean_tags_per_tagged_photo"] == pytest.approx(13 / 7)
  assert s["distinct_tags"] == 7
  assert s["top_tags"] == [["sunset", 4], ["beach", 3], ["nyc", 2], ["broken", 1], ["café", 1]]
  text = yfcc_stats.report(s)
  assert "photos: 12   videos: 1   users (of photos): 6" in text
  assert "   1  sunset" in text and "57.1%" in text  # 4 of 7 tagged photos


def test_auto_titles():
  for t in ("IMG_1234", "DSC01234", "P1010194", "DSCF0001.JPG", "100_1234", "img 0042"):
    assert yfcc_stats.is_auto_title(t), t
  for t in ("Sunset", "Portofino in liberty", "2012", "Mill Lane Junction"):
    assert not yfcc_stats.is_auto_title(t), t


def test_progress_line():
  buf = io.StringIO()
  yfcc_stats.compute(os.devnull, progress_every=1e-9, stream=buf)
  assert "lines/s" in buf.getvalue()


def test_cli_last_line_is_json(fx):
  out = subprocess.run(
    [sys.executable, "-m", "experiments.yfcc_stats", f"--metadata={fx['metadata'][25]}", "--top=3"],
    cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
  )  # fmt: skip
  last = json.loads(out.stdout.strip().splitlines()[-1])
  assert last["photos"] == 12 and last["top_tags"] == [["sunset", 4], ["beach", 3], ["nyc", 2]]
  assert "top 3 tags:" in out.stdout and "lines/s" in out.stderr
