"""Input-pipeline throughput (decode + preprocess), as reported in docs/data.md.

    python -m livermore_brain.data.benchmark

Writes 200 JPEGs of 500x400 (crops of the builtin photographs) to a temporary directory, in the
folder layout and in the YFCC100M layout (hash tree + a 24-field metadata file), and measures
images/s of `make_pipeline(...).iterate()` with `measure_throughput` for:

* ``folder`` and ``yfcc100m``: 300x300x3 center crops (the paper preset), first pass (every image
  decoded) and with ``cache_decoded`` after the cache is warm;
* ``builtin``: 64x64x3 random crops (the ``cpu`` preset's input).
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
from PIL import Image

from livermore_brain import data
from livermore_brain.data import fixtures, images, sources


def write_jpegs(root: str, n: int = 200, size=(500, 400)) -> list[str]:
  """``n`` photo-like JPEGs (crops of the builtin photos) in the YFCC hash layout + metadata."""
  src = sources.BuiltinSource()
  rng = np.random.default_rng(0)
  lines = []
  for i in range(n):
    pyr = src.load(i % src.num_items)
    w, h = pyr.size
    s = rng.uniform(0.5, 1.0)
    cw, ch = min(w, int(s * w)), min(h, int(s * w * size[1] / size[0]))
    x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    img = pyr.levels[0].resize(size, Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
    pid = 10_000 + i
    h_ = fixtures.photo_hash(pid)
    path = os.path.join(root, "images", h_[:3], h_[3:6], f"{h_}.jpg")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.convert("RGB").save(path, quality=90)
    lines.append("\t".join(fixtures._fields(pid, "1@N01", "t", "", "", "", "")))
  with open(os.path.join(root, "yfcc.tsv"), "w") as f:
    f.write("\n".join(lines) + "\n")
  return images.list_images(os.path.join(root, "images"))


def _run(name, cfg, size, batch, num_batches, warm=False, repeats=3):
  """Median (and range) of ``repeats`` measurements of ``num_batches`` batches each."""
  pipe = data.make_pipeline(cfg, image_size=size, channels=3, global_batch=batch, seed=0)
  if warm:  # fill the decoded-image cache: one pass over the images
    it = pipe.iterate()
    for _ in range(-(-pipe.source.num_items // batch)):
      next(it)
  runs = sorted(data.measure_throughput(pipe, num_batches, 10**6 * warm) for _ in range(repeats))
  med = runs[len(runs) // 2]
  print(f"{name:<46} {med:7.0f} images/s  (range {runs[0]:.0f}-{runs[-1]:.0f})", flush=True)
  return med


def stage_costs(root: str) -> None:
  """Single-thread cost of each stage for one 500x400 JPEG -> 300x300x3 (ms per image)."""
  from livermore_brain.data import tf_ops

  paths = images.list_images(os.path.join(root, "images"))[:50]
  blobs = [open(p, "rb").read() for p in paths]  # noqa: SIM115
  t = time.perf_counter()
  crops = [images.crop(images.open_image(b), 300, 3, "center") for b in blobs]
  decode = (time.perf_counter() - t) / len(blobs) * 1e3
  x = np.stack(crops[:32])
  kernel = np.zeros((9, 9, 3, 3), np.float32)
  norm = lambda: tf_ops.normalize(x, 0.01).numpy()
  whiten = tf_ops.whiten_fn(kernel, 300, 300)
  direct = tf_ops.whiten_fn(kernel, 300, 300, block=1)
  xf = tf_ops.normalize(x, 0.01)
  out = []
  for fn in (norm, lambda: whiten(xf).numpy(), lambda: direct(xf).numpy()):
    fn()
    t = time.perf_counter()
    fn()
    out.append((time.perf_counter() - t) / len(x) * 1e3)
  print(
    f"per image: decode+crop {decode:.2f} ms (1 thread); per-image normalization {out[0]:.2f} ms, "
    f"whitening {out[1]:.2f} ms (space-to-depth; direct conv2d {out[2]:.2f} ms), batched TF"
  )


def main() -> dict:
  results = {}
  with tempfile.TemporaryDirectory() as root:
    t = time.perf_counter()
    write_jpegs(root)
    print(f"wrote 200 JPEGs 500x400 in {time.perf_counter() - t:.1f}s; {os.cpu_count()} CPUs")
    for kind, src in (
      ("folder", f"folder:{root}/images"),
      ("yfcc100m", f"yfcc100m:{root}/yfcc.tsv"),
    ):
      cfg = data.default_config()
      cfg.source, cfg.image_dir, cfg.crop, cfg.cache_decoded = (
        src,
        f"{root}/images",
        "center",
        False,
      )
      results[f"{kind}_300_center"] = _run(
        f"{kind} 300x300 center, decode every image", cfg, 300, 32, 12
      )
      cfg.cache_decoded = True
      results[f"{kind}_300_cached"] = _run(f"{kind} 300x300 center, decoded cache warm", cfg, 300, 32, 30, 1)  # fmt: skip
    cfg = data.default_config()
    results["builtin_64_random"] = _run("builtin 64x64 random crops", cfg, 64, 64, 60)
    stage_costs(root)
  return results


if __name__ == "__main__":
  main()
