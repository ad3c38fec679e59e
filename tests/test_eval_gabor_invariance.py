"""Gabor fits of filters and invariance curves of a neuron, against planted answers."""

import numpy as np
import pytest

from livermore_brain.eval import gabor, invariance


def test_gabor_fit_recovers_a_planted_gabor_and_rejects_noise():
  rng = np.random.default_rng(0)
  p = np.array([5.2, 6.1, 0.7, 2.0, 3.0, 0.18, 0.4, 1.5, 0.1])
  img = gabor.gabor(p, 12, 12) + 0.05 * rng.standard_normal((12, 12))
  q, r2 = gabor.fit(img)
  assert r2 > 0.97
  np.testing.assert_allclose(q[:2], p[:2], atol=0.2)  # centre
  assert abs(q[5] - p[5]) < 0.01  # carrier frequency (cycles / pixel)
  # orientation of the carrier, modulo pi (a sign flip of u is a phase change)
  assert min(abs((q[2] - p[2]) % np.pi), np.pi - abs((q[2] - p[2]) % np.pi)) < 0.05
  noise = gabor.r2_scores(rng.standard_normal((4, 12, 12, 3)))
  assert noise.max() < 0.5
  s = gabor.summary(np.array([r2, 0.1]), noise, threshold=0.8)
  assert s["trained_share"] == 0.5 and s["random_share"] == 0.0 and s["filters"] == 2
  with pytest.raises(ValueError, match="2-D"):
    gabor.fit(np.zeros((3, 4, 5)))


def test_transform_moves_rotates_and_scales_about_the_centre():
  x = np.zeros((1, 9, 9, 1), np.float32)
  x[0, 4, 4, 0] = 1.0
  x[0, 4, 6, 0] = 0.5  # two pixels right of the centre
  np.testing.assert_array_equal(invariance.transform(x), x)
  shifted = invariance.transform(x, shift=(1.0, -2.0))
  assert shifted[0, 5, 2, 0] == pytest.approx(1.0) and shifted[0, 5, 4, 0] == pytest.approx(0.5)
  rot = invariance.transform(x, angle=90.0)  # counter-clockwise as displayed: right -> up
  np.testing.assert_allclose(rot[0, :, :, 0], np.rot90(x[0, :, :, 0]), atol=1e-5)
  big = invariance.transform(x, scale=2.0)  # the off-centre pixel lands 4 pixels right
  assert big[0, 4, 8, 0] == pytest.approx(0.5, abs=1e-5)


def test_curves_of_a_planted_centre_neuron_peak_at_the_identity(tmp_path):
  yy, xx = np.mgrid[0:16, 0:16]
  blob = np.exp(-((yy - 7.5) ** 2 + (xx - 7.5) ** 2) / 8.0)[None, :, :, None]
  bar = np.exp(-((yy - 7.5) ** 2) / 2.0)[None, :, :, None] * np.ones((1, 16, 16, 1))
  images = np.concatenate([blob, blob * 0.5]).astype(np.float32)
  tmpl = blob[0, :, :, 0]
  # a centred template matcher (cosine similarity, so a bigger blob is no better a match)
  neuron = lambda x: (
    np.einsum("nhwc,hw->n", x, tmpl) / np.linalg.norm(x.reshape(len(x), -1), axis=1)
  )
  res = invariance.curves(neuron, images, angles=(-90, -45, 0, 45, 90))
  for k in ("scale", "shift_x", "shift_y"):
    m = np.asarray(res[k]["mean"])
    assert int(np.argmax(m)) == res[k]["amount"].index(1.0 if k == "scale" else 0.0), k
  # the round blob is rotation invariant: a flat curve; the scale curve is not
  rot = np.asarray(res["rotation"]["mean"])
  assert np.ptp(rot) < 1e-3 * rot.max() and np.ptp(res["scale"]["mean"]) > 0.05 * rot.max()
  # an oriented bar is not rotation invariant: its response falls off away from 0 degrees
  bar_neuron = lambda x: np.einsum("nhwc,hw->n", x, bar[0, :, :, 0])
  bar_rot = invariance.curves(bar_neuron, bar.astype(np.float32), angles=(0, 45, 90))
  m = bar_rot["rotation"]["mean"]
  assert m[0] > m[1] > m[2]
  invariance.plot(res, str(tmp_path / "inv.png"), title="planted", threshold=1.0)
  assert (tmp_path / "inv.png").stat().st_size > 1000
