"""Optimal stimulus and batched feature extraction, on a linear neuron and on the RICA brain."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from livermore_brain.eval import features, optimal_stimulus, selectivity, topk


def test_linear_neuron_optimum_is_its_weight_direction():
  shape = (6, 5, 2)
  w = jax.random.normal(jax.random.key(1), (60, 7))
  fn = lambda x: x.reshape(x.shape[0], -1) @ w
  imgs, trace = optimal_stimulus.optimal_stimulus(fn, [3, 0], shape, steps=100, norm=2.0)
  assert imgs.shape == (2, *shape) and trace.shape == (101, 2)
  for b, m in enumerate([3, 0]):
    x = imgs[b].reshape(-1)
    assert np.linalg.norm(x) == pytest.approx(2.0, rel=1e-5)
    cos = x @ np.asarray(w[:, m]) / (np.linalg.norm(x) * np.linalg.norm(w[:, m]))
    assert cos > 0.999
  assert np.all(trace[-1] > trace[0])
  zm, _ = optimal_stimulus.optimal_stimulus(fn, 1, shape, steps=20, zero_mean=True)
  assert abs(zm.mean()) < 1e-5
  with pytest.raises(ValueError, match="neuron ids"):
    optimal_stimulus.optimal_stimulus(fn, 7, shape)


def _brain_features():
  from livermore_brain.models import brain

  layers = (brain.LayerSpec("layer1", 4, field=3, stride=2), brain.LayerSpec("layer2", 6, lam=0.01))
  spec = brain.NetworkSpec((8, 8, 1), layers, location_multiple=4)  # padded locations too
  rng = np.random.default_rng(0)  # numpy parameters (cheaper than compiling brain.init)
  params = []
  for g, layer in zip(spec.geometries, spec.layers):
    w = rng.normal(size=(g.padded_locations, layer.features, g.dim)).astype(np.float32)
    w[g.num_locations :] = 0.0
    w /= np.maximum(np.linalg.norm(w, axis=-1, keepdims=True), 1e-12)
    params.append({"w": w, "alpha": np.ones(g.padded_locations, np.float32), "b": 0.0 * w[:, 0]})

  def fn(images):
    top = brain.forward(params, images, spec)[-1]  # (H, W, B, K)
    return jnp.transpose(top, (2, 0, 1, 3)).reshape(images.shape[0], -1)

  return spec, fn


def test_brain_pipeline_composes():
  spec, fn = _brain_features()
  h, w, c = spec.input_shape
  images = np.random.default_rng(2).random((37, h, w, c), np.float32)
  feats = features.apply(fn, images, batch_size=10)
  assert feats.shape[0] == 37
  np.testing.assert_allclose(feats[:5], np.asarray(jax.jit(fn)(images[:10]))[:5], atol=1e-5)
  stats = topk.neuron_stats(features.stream(fn, images, batch_size=10), k=3)
  vals, idx = stats.topk.result()
  np.testing.assert_array_equal(idx, topk.top_k(feats, 3)[1])
  r = selectivity.best_threshold(feats, np.arange(37) % 2 == 0)
  assert r.accuracy.shape == (feats.shape[1],) and r.best_accuracy >= r.chance
  best = stats.most_selective(2)
  imgs, trace = optimal_stimulus.optimal_stimulus(fn, best, (h, w, c), steps=5)
  assert imgs.shape == (2, h, w, c) and np.all(trace.max(0) >= trace[0])
