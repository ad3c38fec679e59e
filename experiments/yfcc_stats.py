r"""YFCC100M metadata statistics: the paper's §2 and Table 1 (Ni et al. 2015), on any such file.

    python -m experiments.yfcc_stats --metadata=/data/yfcc100m_dataset [--top=60]
    python -m experiments.yfcc_stats --metadata=/data/yfcc100m_dataset.bz2   # compressed is fine

Streams the file once in constant memory (plus a set of user ids and a Counter of tags), with a
progress line (lines/s) on stderr. Prints photos vs videos, distinct users, the share of photos
with titles (and how many of those look like camera auto-titles such as "IMG_1234"), descriptions
and tags, mean words per title / description, mean tags per tagged photo and the top-N tags as a
table; the last stdout line is the same numbers as JSON. Malformed lines are counted, not fatal.

Paper (99.2M photos): 578,268 users; 76% titles, 20% auto-titles, 4% none; 3.08 words per title;
32% descriptions, 22.52 words each; 69% tagged, 7.07 tags each.
"""

from __future__ import annotations

import collections
import json
import os
import re
import sys
import time

from absl import app, flags

from livermore_brain.data import yfcc

FLAGS = flags.FLAGS
flags.DEFINE_string("metadata", None, "YFCC100M dataset file (24 or 25 fields; .bz2/.gz ok).")
flags.DEFINE_integer("top", 60, "How many of the most frequent tags to list.")
flags.DEFINE_float("progress_every", 2.0, "Seconds between progress lines on stderr (0 = none).")

# Camera file names used as titles: IMG_1234, DSC01234, P1010194, DSCF0001, 100_1234, 2011-05-01...
AUTO_TITLE = re.compile(
  r"^(?:(?:img|dsc[fn]?|dcp|pict?|p|cimg|sdc|sam|gopr|hpim|imag|mvc|pa|pb|_mg|_dsc|dsci|image|"
  r"photo|mov|vid)[ _-]?\d{3,}|\d{3,}[ _-]\d{3,}|\d{5,})(?:[ _-]\d+)*(?:\.jpe?g)?$",
  re.IGNORECASE,
)


def is_auto_title(title: str) -> bool:
  return bool(AUTO_TITLE.match(title.strip()))


def compute(path: str, top: int = 60, progress_every: float = 2.0, stream=None) -> dict:
  """All statistics of one file as a dict (see the module docstring)."""
  stream = sys.stderr if stream is None else stream
  counts: dict[str, int] = {}
  users: set[str] = set()
  tags: collections.Counter = collections.Counter()
  n = collections.Counter()
  t0 = last = time.perf_counter()
  for rec in yfcc.iter_records(path, counts):
    if progress_every > 0 and (now := time.perf_counter()) - last >= progress_every:
      last = now
      lines = counts.get("lines", 0)
      print(f"\r{lines:,} lines, {lines / (now - t0):,.0f} lines/s", end="", file=stream)
    if rec.is_video:
      n["videos"] += 1
      continue
    n["photos"] += 1
    users.add(rec.user_nsid)
    title = rec.title.strip()
    if title:
      n["titled"] += 1
      n["title_words"] += len(title.split())
      n["auto_titled"] += is_auto_title(title)
    if rec.description.strip():
      n["described"] += 1
      n["description_words"] += len(rec.description.split())
    if rec.user_tags:
      n["tagged"] += 1
      n["tags"] += len(rec.user_tags)
      tags.update(rec.user_tags)
  if progress_every > 0:
    dt = max(time.perf_counter() - t0, 1e-9)
    print(f"\r{counts.get('lines', 0):,} lines, {counts.get('lines', 0) / dt:,.0f} lines/s, "
          "done", file=stream)  # fmt: skip
  photos = n["photos"]
  share = lambda k: n[k] / photos if photos else 0.0
  mean = lambda a, b: n[a] / n[b] if n[b] else 0.0
  return {
    "lines": counts.get("lines", 0),
    "malformed_lines": counts.get("malformed_line", 0),
    "photos": photos,
    "videos": n["videos"],
    "users": len(users),
    "photos_with_title": n["titled"],
    "title_share": share("titled"),
    "auto_title_share": share("auto_titled"),
    "real_title_share": share("titled") - share("auto_titled"),
    "no_title_share": 1.0 - share("titled") if photos else 0.0,
    "mean_words_per_title": mean("title_words", "titled"),
    "photos_with_description": n["described"],
    "description_share": share("described"),
    "mean_words_per_description": mean("description_words", "described"),
    "photos_with_tags": n["tagged"],
    "tag_share": share("tagged"),
    "mean_tags_per_tagged_photo": mean("tags", "tagged"),
    "distinct_tags": len(tags),
    "top_tags": [[t, c] for t, c in sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))[:top]],
  }


def report(s: dict) -> str:
  """The human-readable part (everything but the JSON line)."""
  pct = lambda v: f"{100 * v:.1f}%"
  lines = [
    f"lines: {s['lines']:,} ({s['malformed_lines']:,} malformed)",
    f"photos: {s['photos']:,}   videos: {s['videos']:,}   users (of photos): {s['users']:,}",
    f"titles: {pct(s['title_share'])} ({pct(s['real_title_share'])} written, "
    f"{pct(s['auto_title_share'])} camera auto-titles, {pct(s['no_title_share'])} none), "
    f"{s['mean_words_per_title']:.2f} words per title",
    f"descriptions: {pct(s['description_share'])}, "
    f"{s['mean_words_per_description']:.2f} words per description",
    f"tags: {pct(s['tag_share'])} of photos, {s['mean_tags_per_tagged_photo']:.2f} tags per "
    f"tagged photo, {s['distinct_tags']:,} distinct",
    "",
    f"top {len(s['top_tags'])} tags:",
    f"{'rank':>4}  {'tag':<24} {'photos':>12}  {'of tagged':>9}",
  ]
  for i, (tag, c) in enumerate(s["top_tags"], 1):
    of = c / s["photos_with_tags"] if s["photos_with_tags"] else 0.0
    lines.append(f"{i:>4}  {tag[:24]:<24} {c:>12,}  {pct(of):>9}")
  return "\n".join(lines)


def main(argv):
  del argv
  if not FLAGS.metadata:
    raise app.UsageError("--metadata=<YFCC100M dataset file> is required")
  if not os.path.isfile(FLAGS.metadata):
    raise app.UsageError(f"--metadata={FLAGS.metadata}: no such file")
  stats = compute(FLAGS.metadata, FLAGS.top, FLAGS.progress_every)
  print(report(stats))
  print(json.dumps(stats, ensure_ascii=False))


if __name__ == "__main__":
  app.run(main)
