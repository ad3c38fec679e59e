"""The predictive autoencoder learns a planted motion: a bright square that moves one pixel to
the right per frame. Copying the last context frame (the predictor that learned no motion)
misses it by a known error; the trained network must predict far better, in seconds (measured:
1.0 of the copy error before training, 0.14 after 150 steps)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from experiments.configs import video_features
from livermore_brain import sharding as shd
from livermore_brain.video.task import VideoPredictiveTask, prediction_errors


def moving_squares(rng, n, t, size):
  """``(n, t, size, size, 1)`` clips: a 3x3 square at a random place, shifted right by one
  pixel per frame (wrapping around)."""
  clips = np.zeros((n, t, size, size, 1), np.float32)
  ys, xs = rng.integers(0, size - 3, n), rng.integers(0, size, n)
  for i in range(n):
    frame = np.zeros((size, size), np.float32)
    frame[ys[i] : ys[i] + 3, :3] = 1.0
    frame = np.roll(frame, xs[i], axis=1)
    for f in range(t):
      clips[i, f, :, :, 0] = np.roll(frame, f, axis=1)
  return clips


def test_the_predictor_learns_a_planted_motion_in_seconds():
  config = video_features.get_config("tiny")
  config.optimizer.learning_rate = 3e-3
  task = VideoPredictiveTask(config)
  mesh = shd.make_mesh("data:1,model:1", jax.devices()[:1])
  rules = shd.rules_from_config(config.rules)
  sh = task.state_shardings(mesh, rules)
  state = task.init_state(jax.random.key(0), mesh, sh)
  step = task.step_fn(0, mesh, sh, rules)
  t, size = task.k + task.p, task.frame_shape[0]
  rng = np.random.default_rng(0)
  for _ in range(150):
    state, _ = step(state, {"frames": moving_squares(rng, 16, t, size)})
  held_out = moving_squares(np.random.default_rng(1), 64, t, size)
  mse, copy, _ = prediction_errors(task.model, state.params, held_out, task.k)
  # copying the last frame: the f-th future frame differs in 2 x 3 x min(f, 3) pixels
  want = np.mean([2 * 3 * min(f, 3) for f in range(1, task.p + 1)]) / size**2
  assert float(copy) == pytest.approx(want, rel=1e-6)
  assert float(mse) < 0.3 * float(copy), (float(mse), float(copy))
