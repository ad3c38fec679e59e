"""Import TensorFlow for the input pipeline and keep it off the GPUs (JAX owns them)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # hide TF's INFO banner unless asked for

import tensorflow as tf  # noqa: E402

try:
  tf.config.set_visible_devices([], "GPU")
except (RuntimeError, ValueError):  # TF already initialized its devices: nothing left to do
  pass

__all__ = ["tf"]
