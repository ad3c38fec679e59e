"""The model families of the lab, by name: the one place that knows them all.

A family is a `train.task.Task` subclass plus a feature loader, in its own package; an
experiment config names it in ``config.family`` (runs written before families existed are
``rica``). Generic code (the loop, data, evaluation) never imports a family; this table is how
the entry points and the run-directory tools reach one::

    task = families.make_task(config)                     # config.family -> its Task
    summary = families.train(config, workdir)             # loop.run(make_task(config), ...)
    fx = families.load_features("runs/resception-cpu")    # any run -> a feature extractor
    fx.layers, fx.features(images, "block2"), fx.random_network()

Adding a family: its package with a `Task` (and a ``load_features(workdir, ...)`` returning an
`eval.extractor.FeatureExtractor`), one line in `FAMILIES`, one config, one thin experiment.
"""

from __future__ import annotations

import importlib

import ml_collections

from livermore_brain.train import config_ranges

# family name -> (module, Task class name). Imported only when asked for.
FAMILIES: dict[str, tuple[str, str]] = {
  "rica": ("livermore_brain.rica.task", "RicaTask"),
  "supervised": ("livermore_brain.supervised.task", "SupervisedTask"),
  "context": ("livermore_brain.context.task", "ContextTask"),
  "gan": ("livermore_brain.gan.task", "GanTask"),
  "video_predictive": ("livermore_brain.video.task", "VideoPredictiveTask"),
  "video_gan": ("livermore_brain.gan.video", "VideoGanTask"),
}


def family_of(config: ml_collections.ConfigDict) -> str:
  name = str(config.get("family", "rica") or "rica")
  if name not in FAMILIES:
    raise ValueError(f"unknown model family {name!r}; known families: {', '.join(FAMILIES)}")
  return name


def module(name: str):
  """The family's task module (``load_features`` lives beside its Task)."""
  if name not in FAMILIES:
    raise ValueError(f"unknown model family {name!r}; known families: {', '.join(FAMILIES)}")
  return importlib.import_module(FAMILIES[name][0])


def make_task(config: ml_collections.ConfigDict):
  """The `Task` that ``config.family`` names, built from ``config``."""
  name = family_of(config)
  cls = getattr(module(name), FAMILIES[name][1])
  config_ranges.check(config, cls.config_ranges)  # one clear line, before the task is built
  return cls(config)


def train(config: ml_collections.ConfigDict, workdir: str, devices=None) -> dict:
  """Train (or resume) the family of ``config`` in ``workdir``; returns the loop's summary."""
  from livermore_brain.train import loop

  return loop.run(make_task(config), config, workdir, devices)


def load_features(workdir: str, step: int | None = None, devices=None, mesh=None):
  """A feature extractor (`eval.extractor.FeatureExtractor`) over the run in ``workdir``."""
  from livermore_brain.train import run_dir

  config = run_dir.load_config(workdir)
  return module(family_of(config)).load_features(workdir, step=step, devices=devices, mesh=mesh)
