r"""Curriculum vs control for the video GAN, from finished runs: ``python -m
experiments.video_gan_compare --runs=runs/vg-progressive-s0,runs/vg-none-s0,... [--layer=conv8x4]``.

For every run (any ``video_gan`` run directory):

* **stability** (its metrics.jsonl; each log a window mean): D's accuracy on real and on fake
  clips over the last fifth of the run; the fraction of logs with D's accuracy within 0.15 of
  0.5 (the in-band logs, over the whole run and over the full-size game only); the first logged
  step from which D's accuracy stays <= 0.9 (`gan_compare`'s "alive"); the final diversity;
* **transfer**: the discriminator's ``--layer`` (pooled over time, then to a ``--pool`` grid)
  as features of moving-digit clips (``moving_mnist``: train clips -> probe, test clips ->
  error), a linear probe (`eval.linear_probe.transfer_table`) of the motion direction (8
  classes) with ``--labels`` labeled clips, mean ± sd over ``--probe_seeds`` nested label
  subsets; beside the same discriminator at random initialization (its twin) and the raw frames
  (the clip's pixels, time-averaged and pooled to the same grid, and unpooled).

Prints a markdown table and writes ``--out`` (``.md`` and ``.json``). The label here is the
clip's motion direction, not an action class: a different, tiny task from the report's
HMDB-51 transfer.
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import app, flags

flags.DEFINE_list("runs", [], "video_gan run directories.")
flags.DEFINE_string("layer", "conv8x4", "Discriminator layer (fx.layers).")
flags.DEFINE_integer("pool", 2, "Spatial pooling grid of the layer's time-averaged map.")
flags.DEFINE_list("labels", ["100", "1000"], "Numbers of labeled training clips.")
flags.DEFINE_integer("probe_seeds", 3, "Label subsets per cell (mean ± sd).")
flags.DEFINE_string("out", "runs/video_gan_compare", "Output path prefix (.md, .json).")
FLAGS = flags.FLAGS

BAND, ALIVE = 0.15, 0.9


def stability(workdir: str) -> dict:
  from experiments.gan_compare import _stays
  from livermore_brain.train import metrics

  rows = [r for r in metrics.read_metrics(workdir) if "d/accuracy" in r]
  n = max(r["step"] for r in rows)  # the last logged step (an unfinished run: so far)
  steps = [r["step"] for r in rows]
  acc = [r["d/accuracy"] for r in rows]
  tail = [r for r in rows if r["step"] > 0.8 * n]
  last_stage = max(r["curriculum/stage"] for r in rows)
  full = [r for r in rows if r["curriculum/stage"] == last_stage]
  in_band = lambda rs: float(np.mean([abs(r["d/accuracy"] - 0.5) <= BAND for r in rs]))
  return dict(
    last_step=n,
    acc_real=float(np.mean([r["d/acc_real"] for r in tail])),
    acc_fake=float(np.mean([r["d/acc_fake"] for r in tail])),
    acc=float(np.mean([r["d/accuracy"] for r in tail])),
    in_band=in_band(rows),
    in_band_full=in_band(full),
    alive_from=_stays(steps, acc, lambda a: a <= ALIVE),
    diversity=float(np.mean([r["quality/diversity"] for r in tail])),
  )


def clips_and_labels(split: str, shape) -> tuple[np.ndarray, np.ndarray]:
  from livermore_brain.data.clip_sources import MovingDigitsSource

  src = MovingDigitsSource(split)
  t, h, w, c = shape
  x = np.stack([src.clip(i, t, h, w, c) for i in range(src.num_items)]).astype(np.float32)
  return x / 255.0, np.asarray([src.label(i) for i in range(src.num_items)], np.int32)


def raw(clips: np.ndarray, pool: int | None) -> np.ndarray:
  """The raw frames: all pixels, or their time average pooled to ``pool x pool``."""
  if not pool:
    return clips.reshape(clips.shape[0], -1)
  m = clips.mean(axis=1)
  n, h, w, c = m.shape
  return m.reshape(n, pool, h // pool, pool, w // pool, c).mean(axis=(2, 4)).reshape(n, -1)


def main(_):
  from livermore_brain import families
  from livermore_brain.eval import linear_probe

  counts = [int(v) for v in FLAGS.labels]
  seeds = list(range(FLAGS.probe_seeds))
  fit = dict(l2=(1e-3, 1e-2, 1e-1), max_iter=300)
  out, sources, data = {"runs": {}}, {}, None
  for wd in FLAGS.runs:
    fx = families.load_features(wd)
    if data is None:
      (xtr, ytr), (xte, yte) = (clips_and_labels(s, fx.clip_shape) for s in ("train", "test"))
      data = (ytr, yte)
      sources["raw frames (all pixels)"] = (raw(xtr, None), raw(xte, None))
      sources[f"raw frames (time mean, {FLAGS.pool}x{FLAGS.pool})"] = (
        raw(xtr, FLAGS.pool),
        raw(xte, FLAGS.pool),
      )
    name = f"{os.path.basename(os.path.normpath(wd))} (step {fx.step})"
    for tag, f in (("trained", fx), ("random init", fx.random_network())):
      feats = [f.features(x, FLAGS.layer, pool=FLAGS.pool) for x in (xtr, xte)]
      sources[f"{name}: D {FLAGS.layer} ({tag})"] = tuple(feats)
    out["runs"][name] = stability(wd)
    print(name, out["runs"][name], flush=True)
  table = linear_probe.transfer_table(sources, *data, counts, seeds=seeds, **fit)
  out["transfer"] = table
  md = ["| run | D acc real / fake (last 20%) | logs in 0.5 ± 0.15 (all / full size) | "
        "D acc <= 0.9 from step | diversity |", "|---|---|---|---|---|"]  # fmt: skip
  for name, s in out["runs"].items():
    md.append(
      f"| {name} | {s['acc_real']:.2f} / {s['acc_fake']:.2f} | {s['in_band']:.2f} / "
      f"{s['in_band_full']:.2f} | {s['alive_from'] if s['alive_from'] is not None else 'never'} "
      f"| {s['diversity']:.2f} |"
    )
  md += ["", linear_probe.to_markdown(table, title="features (motion direction, error)")]
  text = "\n".join(md)
  print(text)
  os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
  with open(FLAGS.out + ".md", "w") as f:
    f.write(text + "\n")
  with open(FLAGS.out + ".json", "w") as f:
    json.dump(out, f, indent=1)


if __name__ == "__main__":
  app.run(main)
