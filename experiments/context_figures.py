r"""Figures of a context-prediction run: ``python -m experiments.context_figures --workdir=<run>``.

Writes into the run directory ``task_samples.png`` (samples drawn from held-out photographs with
their arrangement labels) and ``neighbours.png`` (query patches from held-out photographs and
their nearest patches in the trained tower's ``pool`` features, beside its random twin's).
"""

from __future__ import annotations

import os

from absl import flags

from experiments import common

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory of a context-prediction run.")
_SOURCE = flags.DEFINE_string("source", "", "Held-out images (default: the run's eval.source).")
_LAYER = flags.DEFINE_string("layer", "pool", "Tower layer for the nearest neighbours.")


def figures(workdir: str, source: str = "", layer: str = "pool", n_images: int = 64) -> dict:
  from livermore_brain import data, families
  from livermore_brain.context import figures as figs
  from livermore_brain.train import run_dir

  config = run_dir.load_config(workdir)
  if config.get("family") != "context":
    raise ValueError(f"{workdir} is a {config.get('family', 'rica')} run, not a context run")
  task = families.make_task(config)
  cfg = config.data.copy_and_resolve_references()
  cfg.source = source or config.eval.source or config.data.source
  pipe = data.make_pipeline(cfg, task.input_spec, global_batch=n_images, seed=1)
  it = pipe.iterate(start_batch=0)
  images = next(it)["image"]
  it.close()
  fx = families.load_features(workdir)
  patches = figs.held_out_patches(task, images[:32], per_image=6)
  out = {
    "task_samples": figs.task_samples(task, images, os.path.join(workdir, "task_samples.png")),
    "neighbours": figs.nearest_neighbours(
      {"trained": fx, "random init": fx.random_network()},
      patches,
      os.path.join(workdir, "neighbours.png"),
      layer=layer,
    ),
  }
  return out


def main(argv):
  if len(argv) > 1 or not _WORKDIR.value:
    raise ValueError("usage: python -m experiments.context_figures --workdir=<context run>")
  for name, path in figures(_WORKDIR.value, _SOURCE.value, _LAYER.value).items():
    print(f"{name}: {path}")


if __name__ == "__main__":
  common.run(main)
