"""RICA readouts (`rica.features.BrainFeatures.with_readout`) against numpy on the raw map."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from livermore_brain import sharding as shd
from livermore_brain.eval import extractor
from livermore_brain.models import presets
from livermore_brain.rica import features as bfl


@pytest.fixture(scope="module")
def net():
  spec = presets.spec("tiny")
  mesh = shd.make_mesh("1,1", jax.devices()[:1])
  return bfl.BrainFeatures(spec, (), mesh).random_network(seed=2)


def np_pool(m, g, mode):
  """(N, H, W, K) -> (N, g, g, K) with the adaptive bins."""
  red = {
    "avg": lambda v: v.mean((1, 2)),
    "max": lambda v: v.max((1, 2)),
    "l2": lambda v: np.sqrt((v**2).mean((1, 2)) + 1e-8),
  }[mode]
  bins_h, bins_w = extractor.pool_bins(m.shape[1], g), extractor.pool_bins(m.shape[2], g)
  return np.stack([np.stack([red(m[:, a:b, c:d]) for c, d in bins_w], 1) for a, b in bins_h], 1)


@pytest.mark.parametrize("readout", ["raw", "abs", "relu", "split"])
@pytest.mark.parametrize("mode", ["avg", "max", "l2"])
def test_readouts_and_pooling_match_numpy(net, readout, mode):
  images = np.random.default_rng(0).random((5, 16, 16, 3), np.float32)
  h, w, k = net.feature_shape(0)
  raw = net.features(images, 0).reshape(5, h, w, k).astype(np.float64)
  want = {
    "raw": raw,
    "abs": np.abs(raw),
    "relu": np.maximum(raw, 0),
    "split": np.concatenate([np.maximum(raw, 0), np.maximum(-raw, 0)], -1),
  }[readout]
  want = np_pool(want, 2, mode)
  f = net.with_readout(readout=readout)
  got = f.features(images, 0, 2, pool_mode=mode)
  assert got.shape == (5, int(np.prod(f.feature_shape(0, 2))))
  np.testing.assert_allclose(got, want.reshape(5, -1), rtol=1e-4, atol=1e-5)


def test_feature_groups_tap_and_input_scale(net):
  images = np.random.default_rng(1).random((4, 16, 16, 3), np.float32)
  h, w, k = net.feature_shape(0)
  raw = net.features(images, 0).reshape(4, h, w, k).astype(np.float64)
  grouped = net.with_readout(group=2).features(images, 0).reshape(4, h, w, k // 2)
  want = np.sqrt((raw.reshape(4, h, w, k // 2, 2) ** 2).sum(-1) + 1e-8)
  np.testing.assert_allclose(grouped, want, rtol=1e-4, atol=1e-5)
  # tap=encode: alpha W x before LCN; a constant-shift of the whole map changes it, LCN not.
  enc = net.with_readout(tap="encode")
  assert enc.feature_shape(0) == (*net.spec.geometries[0].grid, k)
  assert enc.features(images, 0).shape == (4, int(np.prod(enc.feature_shape(0))))
  # input_scale 0.5: the image shrinks to 8x8 in the centre, the border is the edge value.
  flat = np.zeros((1, 16, 16, 3), np.float32)
  flat[:, 4:12, 4:12] = 1.0
  small = np.asarray(bfl.shrink_images(jax.numpy.asarray(flat), 0.5))
  assert small.shape == flat.shape and small[0, 0, 0, 0] == 0.0 and small[0, 8, 8, 0] > 0.9
  assert small[0, 5, 5, 0] < 0.1  # the bright square is now 4x4 around the centre
  with pytest.raises(ValueError, match="readout"):
    net.with_readout(readout="nope")
  with pytest.raises(ValueError, match="divide"):
    net.with_readout(group=3).features(images, 0)
