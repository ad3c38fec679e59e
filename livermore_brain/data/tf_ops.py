"""Vectorized batch preprocessing in TensorFlow: per-image normalization (or scaling) + whitening.

The whitening filter has only C = 1 or 3 input and output channels, a shape oneDNN convolves
inefficiently (2.0-2.7 ms per 300x300x3 image on the 2-core dev host). `whiten_fn` computes
exactly the same correlation on a space-to-depth view: the padded image is cut into b x b blocks
(``b * b * C`` channels), the ``p x p`` filter becomes a ``k x k`` filter between blocks with
``k = (b + p - 2) // b + 1`` (3 for p <= 9, b = 4), and depth-to-space restores the image: more
multiply-adds, but a GEMM-friendly shape (1.4-1.65 ms per image, ~1.5x faster). Results equal
the direct convolution to float32 rounding.
"""

from __future__ import annotations

import numpy as np

from livermore_brain.data.tfenv import tf


def block_kernel(kernel: np.ndarray, b: int) -> np.ndarray:
  """The ``(p, p, C, C)`` correlation kernel as a ``(k, k, b*b*C, b*b*C)`` kernel on blocks."""
  p, _, c, _ = kernel.shape
  k = (b + p - 2) // b + 1
  out = np.zeros((k, k, b * b * c, b * b * c), np.float32)
  for ky in range(k):
    for kx in range(k):
      for i in range(b * b):  # position of the input pixel in its block
        iy, ix = divmod(i, b)
        for o in range(b * b):  # position of the output pixel in its block
          oy, ox = divmod(o, b)
          dy, dx = ky * b + iy - oy, kx * b + ix - ox
          if 0 <= dy < p and 0 <= dx < p:
            out[ky, kx, i * c : (i + 1) * c, o * c : (o + 1) * c] = kernel[dy, dx]
  return out


def whiten_fn(kernel: np.ndarray, height: int, width: int, block: int = 4):
  """``f(x)``: ``(N, H, W, C)`` -> whitened, 'symmetric' boundary (same as `Whitening.apply`)."""
  p = kernel.shape[0]
  r = p // 2
  if block < 2:
    k = tf.constant(kernel, tf.float32)

    def direct(x):
      xp = tf.pad(x, [[0, 0], [r, r], [r, r], [0, 0]], mode="SYMMETRIC")
      return tf.nn.conv2d(xp, k, strides=1, padding="VALID")

    return direct
  kb = tf.constant(block_kernel(kernel, block))
  nk = kb.shape[0]
  hp = (-(-height // block) + nk - 1) * block
  wp = (-(-width // block) + nk - 1) * block

  def blocked(x):
    xp = tf.pad(x, [[0, 0], [r, r], [r, r], [0, 0]], mode="SYMMETRIC")
    xp = tf.pad(xp, [[0, 0], [0, hp - height - 2 * r], [0, wp - width - 2 * r], [0, 0]])
    y = tf.nn.conv2d(tf.nn.space_to_depth(xp, block), kb, strides=1, padding="VALID")
    return tf.nn.depth_to_space(y, block)[:, :height, :width, :]

  return blocked


def normalize(x_uint8, eps: float):
  """Per-image ``(x / 255 - mean) / (std + eps)`` over pixels and channels, float32."""
  x = tf.cast(x_uint8, tf.float32) / 255.0
  mean, var = tf.nn.moments(x, axes=[1, 2, 3], keepdims=True)
  return (x - mean) / (tf.sqrt(var) + eps)


def scale(x_uint8):
  """``x / 255`` as float32 in [0, 1] (the stage used instead of `normalize`)."""
  return tf.cast(x_uint8, tf.float32) / 255.0
