"""The predictive autoencoder on clips as a `Task` (``family = "video_predictive"``).

Reads ``model`` (``frame_shape`` (H, W, C), ``context_frames`` K, ``predict_frames`` P,
``widths``, ``decoder_width``; `nets`), ``optimizer``, ``eval`` and ``seed`` of an experiment
config (`experiments/configs/video_features.py`). Each batch holds clips of K + P frames
(``frames`` (B, K + P, H, W, C), `data.video`); the encoder sees the first K, the decoder
predicts the last P; the loss is their mean squared error. Reported beside it: the error of
*copying the last context frame* (the trivial predictor a model that learned no motion matches).

The state is a `supervised.task.TrainState` (no batch statistics); parameters carry logical axis
names, so the loop's rules table shards them and checkpoints / exact resume are the loop's.
Evaluation (every ``eval_every`` steps and at the end): both errors on the first
``eval.num_clips`` clips of ``eval.source``. Each checkpoint writes ``predictions.png`` (context,
true and predicted frames of four held-out clips, `figures`).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from livermore_brain import sharding as shd
from livermore_brain.data.spec import InputSpec
from livermore_brain.supervised.task import init_train_state, init_with_rbg, train_state_shardings
from livermore_brain.train import config_ranges, optim
from livermore_brain.train.task import Task
from livermore_brain.video.nets import PredictiveAutoencoder


def build_model(config: ml_collections.ConfigDict) -> PredictiveAutoencoder:
  m = config.model
  return PredictiveAutoencoder(
    widths=tuple(int(w) for w in m.widths),
    predict_frames=int(m.predict_frames),
    channels=int(m.frame_shape[2]),
    decoder_width=int(m.decoder_width),
  )


def split_clip(frames: jax.Array, k: int):
  """``(context, future)``: the first ``k`` frames and the rest."""
  return frames[:, :k], frames[:, k:]


def prediction_errors(model, params, frames, k: int):
  """``(mse of the prediction, mse of copying the last context frame, prediction)``."""
  ctx, fut = split_clip(frames, k)
  pred = model.apply({"params": params}, ctx)
  mse = jnp.mean(jnp.square(pred - fut))
  copy = jnp.mean(jnp.square(ctx[:, -1:] - fut))
  return mse, copy, pred


class VideoPredictiveTask(Task):
  family = "video_predictive"
  config_ranges = {
    "model.context_frames": config_ranges.POSITIVE,
    "model.predict_frames": config_ranges.POSITIVE,
    "model.decoder_width": config_ranges.POSITIVE,
    "eval.num_clips": config_ranges.POSITIVE,
  }

  def __init__(self, config: ml_collections.ConfigDict):
    m = config.model
    self.config = config
    self.arch = "(2+1)-D predictive AE"
    h, w, c = (int(v) for v in m.frame_shape)
    self.k, self.p = int(m.context_frames), int(m.predict_frames)
    if h % (1 << len(m.widths)) or w % (1 << len(m.widths)):
      raise ValueError(
        f"model.frame_shape {h}x{w} must be divisible by 2^{len(m.widths)} (one halving per "
        f"encoder block, model.widths={tuple(m.widths)})"
      )
    self.frame_shape = (h, w, c)
    self.input_spec = InputSpec((h, w, c), ("frames",), num_frames=self.k + self.p)
    self.model = build_model(config)
    self.tx = optim.make_optimizer(config.optimizer, int(config.num_steps))
    self.seed = int(config.seed)
    self._step = None
    self._eval = None

  @property
  def clip_input_shape(self) -> tuple[int, int, int, int]:
    """``(K, H, W, C)``: what the encoder (and the feature extractor) takes."""
    return (self.k, *self.frame_shape)

  # ---- state ------------------------------------------------------------------------------
  def _example(self):
    return jnp.zeros((1, *self.clip_input_shape), jnp.float32)

  def _init(self, key):
    return init_train_state(self.model, self.tx, key, self._example())

  def abstract_state(self):
    return jax.eval_shape(self._init, jax.random.key(0))

  def state_shardings(self, mesh: Mesh, rules):
    boxed = jax.eval_shape(lambda: self.model.init(jax.random.key(0), self._example()))
    return train_state_shardings(mesh, boxed, rules, self.tx, self.abstract_state())

  def init_state(self, key, mesh: Mesh, shardings):
    return init_with_rbg(self._init, key, shardings)

  def describe(self) -> str:
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.abstract_state().params))
    t, (h, w, c) = self.k + self.p, self.frame_shape
    return (
      f"{self.arch}: {n:,} parameters; clips of {t} frames {h}x{w}x{c}: encode {self.k}, "
      f"predict {self.p}; exported layers {', '.join(self.model.feature_layers())}"
    )

  # ---- step -------------------------------------------------------------------------------
  def step_fn(self, step: int, mesh: Mesh, shardings, rules):
    if self._step is not None:
      return self._step
    model, k = self.model, self.k

    def train_step(state, batch):
      def f(params):
        mse, copy, _ = prediction_errors(model, params, batch["frames"], k)
        return mse, copy

      (loss, copy), grads = jax.value_and_grad(f, has_aux=True)(state.params)
      updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
      params = jax.tree.map(lambda p, u: p + u, state.params, updates)
      new = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
      return new, {"train/loss": loss, "train/copy_last_mse": copy}

    self._step = self.jit_step(train_step, mesh, shardings, rules)
    return self._step

  # ---- evaluation and figure ----------------------------------------------------------------
  def setup(self, mesh: Mesh, rules, workdir: str, pipeline) -> None:
    src = str(self.config.eval.get("source", "") or "")
    self._eval = HeldOut(self, src, mesh) if src else None

  def evaluate(self, state, step: int) -> dict[str, float]:
    return {} if self._eval is None else self._eval(state)

  def on_checkpoint(self, state, workdir: str, pipeline) -> None:
    if self._eval is None:
      return
    from livermore_brain.video import figures

    clips = self._eval.clips[:4]
    pred = np.asarray(self.predict(state.params, clips))
    figures.prediction_figure(
      clips[:, : self.k], clips[:, self.k :], pred, os.path.join(workdir, "predictions.png")
    )

  def predict(self, params, clips) -> jax.Array:
    """Predicted next frames ``(N, P, H, W, C)`` of clips ``(N, >= K, H, W, C)``."""
    return self.model.apply({"params": params}, jnp.asarray(clips[:, : self.k]))

  def feature_layers(self) -> tuple[str, ...]:
    return self.model.feature_layers()


class HeldOut:
  """Prediction and copy-last errors on the first ``eval.num_clips`` clips of a source."""

  def __init__(self, task: VideoPredictiveTask, source: str, mesh: Mesh):
    from livermore_brain import data as data_lib

    cfg = ml_collections.ConfigDict(task.config.data.to_dict())
    cfg.source, cfg.shuffle, cfg.flip = source, False, False
    n = int(task.config.eval.num_clips)
    pipe = data_lib.make_pipeline(cfg, task.input_spec, global_batch=n, seed=task.seed)
    self.n = min(n, pipe.source.num_items)
    it = pipe.iterate(0)
    self.clips = next(it)["frames"][: self.n]
    it.close()
    k = task.k
    self.errors = jax.jit(
      lambda params, x: prediction_errors(task.model, params, x, k)[:2],
      out_shardings=shd.replicated(mesh),
    )
    self.mesh = mesh

  def __call__(self, state) -> dict[str, float]:
    x = jax.device_put(self.clips, shd.replicated(self.mesh))
    mse, copy = (float(v) for v in self.errors(state.params, x))
    return {"eval/mse": mse, "eval/copy_last_mse": copy, "eval/mse_ratio": mse / max(copy, 1e-12)}


def load_features(workdir: str, step: int | None = None, devices=None, mesh=None):
  """`video.features.ClipFeatures` of the run in ``workdir`` (`livermore_brain.families`)."""
  from livermore_brain.video import features

  return features.ClipFeatures.load(workdir, step=step, devices=devices, mesh=mesh)
