"""Import TensorFlow for the input pipeline and keep it off the GPUs (JAX owns them)."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # hide TF's INFO banner unless asked for


def _import_tf_quietly():
  """TF 2.21's C++ start-up banners ("oneDNN custom operations are on", ...) ignore
  TF_CPP_MIN_LOG_LEVEL; silence file descriptor 2 for the import only (Python errors still
  propagate). ``TF_CPP_MIN_LOG_LEVEL=0`` shows everything."""
  if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
    import tensorflow

    return tensorflow
  sys.stderr.flush()
  saved = os.dup(2)
  try:
    with open(os.devnull, "w") as null:
      os.dup2(null.fileno(), 2)
      import tensorflow
  finally:
    os.dup2(saved, 2)
    os.close(saved)
  return tensorflow


tf = _import_tf_quietly()

try:
  tf.config.set_visible_devices([], "GPU")
except (RuntimeError, ValueError):  # TF already initialized its devices: nothing left to do
  pass

__all__ = ["tf"]
