"""A GAN run's evaluation and figures: Frechet distance and diversity of fixed-latent samples
against held-out images (in `quality`'s fixed feature space), the sample grid written at every
checkpoint and the latent interpolation written at the last."""

from __future__ import annotations

import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from livermore_brain.data import stages
from livermore_brain.gan import quality


class Quality:
  """``eval/fd`` and ``eval/diversity`` of a state's samples; the references ``eval/fd_train``
  (training images vs held-out: the floor) and ``eval/fd_noise`` (uniform noise) once."""

  def __init__(self, task, source: str, workdir: str):
    n = int(task.config.eval.num_samples)
    self.task = task
    self.held = first_images(task, source, n, workdir)
    self.n = n = self.held.shape[0]
    self.feat = jax.jit(quality.features)
    self.f_held = self._features(self.held)
    train = first_images(task, str(task.config.data.source), n, workdir, shuffle=True)
    noise = np.random.default_rng(0).random(self.held.shape, np.float32)
    self.refs = {
      "eval/fd_train": quality.frechet(self._features(train), self.f_held),
      "eval/fd_noise": quality.frechet(self._features(noise), self.f_held),
    }
    self.z = task.fixed_latents(n, salt=2)

  def _features(self, images01: np.ndarray) -> np.ndarray:
    out = [
      np.asarray(self.feat(jnp.asarray(images01[i : i + 500]) * 2.0 - 1.0))
      for i in range(0, images01.shape[0], 500)
    ]
    return np.concatenate(out)

  def __call__(self, state) -> dict[str, float]:
    f = self._features(self.task.sample(state, self.z))
    row = {
      "eval/fd": quality.frechet(f, self.f_held),
      "eval/diversity": float(quality.diversity(jnp.asarray(f), jnp.asarray(self.f_held))),
    }
    return {**row, **self.refs}


def first_images(task, source: str, n: int, workdir: str, shuffle: bool = False) -> np.ndarray:
  """The first ``n`` images of ``source`` through the run's stages (flip / jitter off).

  Whole-image crops (``resize``, ``center``) give one image per item, so at most ``num_items``.
  Random crops (a few large photographs) give ``n`` crops, cycling over the items: the crops are
  a function of ``(seed 0, example index)``, so every run, whatever its seed, is compared with the
  same images.
  """
  from livermore_brain import data as data_lib

  cfg = ml_collections.ConfigDict(task.config.data.to_dict())
  cfg.source = source
  cfg.shuffle = shuffle
  cfg.flip = False
  cfg.color_jitter = 0.0
  pipe = data_lib.make_pipeline(
    cfg,
    task.input_spec,
    global_batch=100,
    seed=0,
    process_index=0,
    process_count=1,
    workdir=workdir,
  )
  if stages.resolve_crop(str(cfg.crop), pipe.source) != "random":
    n = min(n, int(pipe.source.num_items))
  out, it = [], pipe.iterate(start_batch=0)
  try:
    while sum(x.shape[0] for x in out) < n:
      out.append(np.asarray(next(it)["image"]))
  finally:
    it.close()
  return np.concatenate(out)[:n]


def save_samples(workdir: str, step: int, images: np.ndarray, title: str, rows=None) -> str:
  """``samples/step_<step>.png`` (a grid of ``images``, see `viz.image_grid`) and its copy
  ``samples.png`` in ``workdir``."""
  from livermore_brain import viz

  os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
  path = viz.image_grid(
    images,
    os.path.join(workdir, "samples", f"step_{step:07d}.png"),
    rows=rows,
    normalize=False,
    suptitle=f"step {step}, {title}",
  )
  shutil.copyfile(path, os.path.join(workdir, "samples.png"))
  return path


def save_interpolation(task, state, path: str, rows: int = 6, cols: int = 10) -> str:
  """Linear paths between pairs of fixed latents (one row each), rendered in one batch."""
  from livermore_brain import viz

  ends = np.asarray(task.fixed_latents(2 * rows, salt=1)).reshape(rows, 2, -1)
  t = np.linspace(0.0, 1.0, cols)[None, :, None]
  z = (1 - t) * ends[:, :1] + t * ends[:, 1:]
  imgs = task.sample(state, z.reshape(rows * cols, -1), batch_size=rows * cols)
  return viz.image_grid(
    imgs.reshape(rows, cols, *imgs.shape[1:]),
    path,
    normalize=False,
    suptitle="latent interpolation",
  )
