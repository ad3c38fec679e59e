"""ZCA whitening as a convolution filter: fit, apply (numpy == tf.data), undo, save / load."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from livermore_brain.data import images, whitening


def _smooth(shape, seed=0, sigma=3.0):
  x = np.random.default_rng(seed).standard_normal(shape)
  x = ndimage.gaussian_filter(x, (0,) * (len(shape) - 3) + (sigma, sigma, 0))
  return (x / x.std()).astype(np.float32)


@pytest.fixture(scope="module")
def photos():
  """Normalized 48x48 crops of real photographs."""
  from livermore_brain.data import sources

  src = sources.BuiltinSource()
  return [
    images.normalize(images.crop(src.load(i), 48, 3, "center"), 0.01) for i in range(src.num_items)
  ]


@pytest.fixture(scope="module")
def white(photos):
  return whitening.fit(photos, patch=7, num_patches=20_000, eps=0.1, seed=0)


def test_fit_shape_symmetry_and_whitening_effect(white, photos):
  k = white.kernel
  assert k.shape == (7, 7, 3, 3) and white.patch == 7 and white.channels == 3
  np.testing.assert_allclose(k, k[::-1], atol=1e-6)
  np.testing.assert_allclose(k, k[:, ::-1], atol=1e-6)
  # Whitening flattens the spectrum: neighbouring pixels decorrelate.
  x = np.stack(photos)
  y = white.apply(x)
  corr = lambda a: np.corrcoef(a[:, :, :-1].ravel(), a[:, :, 1:].ravel())[0, 1]
  assert corr(x) > 0.7 and abs(corr(y)) < 0.3


def test_undo_inverts_apply(white):
  for shape in [(2, 40, 56, 3), (5, 16, 16, 3), (3, 3, 3)]:  # images, patches, a tiny patch
    x = _smooth(shape, sigma=2.0) if min(shape[-3:-1]) > 8 else _smooth(shape, sigma=0.5)
    np.testing.assert_allclose(white.undo(white.apply(x)), x, atol=2e-3)
  noise = np.random.default_rng(1).standard_normal((2, 24, 24, 3)).astype(np.float32)
  np.testing.assert_allclose(white.undo(white.apply(noise)), noise, atol=2e-3)
  assert white.undo(white.apply(noise), reg=1e-1).std() < noise.std()  # more reg: smoother


@pytest.mark.parametrize("block", [1, 2, 4])
@pytest.mark.parametrize("size", [20, 30])
def test_apply_is_linear_and_matches_tf(white, block, size):
  from livermore_brain.data import tf_ops

  x, y = _smooth((2, size, size + 2, 3), 1), _smooth((2, size, size + 2, 3), 2)
  np.testing.assert_allclose(white.apply(2 * x - y), 2 * white.apply(x) - white.apply(y), atol=1e-4)
  got = tf_ops.whiten_fn(white.kernel, size, size + 2, block=block)(x).numpy()
  np.testing.assert_allclose(got, white.apply(x), atol=1e-4)


def test_tf_normalize_matches_numpy():
  from livermore_brain.data import tf_ops

  u8 = np.random.default_rng(0).integers(0, 256, (3, 8, 9, 3)).astype(np.uint8)
  np.testing.assert_allclose(
    tf_ops.normalize(u8, 0.01).numpy(), images.normalize(u8, 0.01), atol=1e-5
  )


def test_save_load(white, tmp_path):
  path = str(tmp_path / "whitening.npz")
  white.save(path)
  back = whitening.Whitening.load(path)
  np.testing.assert_array_equal(back.kernel, white.kernel)
  assert back.meta["patch"] == 7 and back.meta["eps"] == pytest.approx(0.1)


def test_errors(white):
  with pytest.raises(ValueError, match="odd"):
    whitening.fit([np.zeros((16, 16, 1))], patch=8)
  with pytest.raises(ValueError, match=r"\(\.\.\., H, W, 3\)"):
    white.apply(np.zeros((4, 4, 1)))
