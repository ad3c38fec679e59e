"""Input pipeline (tf.data only, no JAX): sources, the paper's preprocessing, whitening, batches.

    from livermore_brain import data
    cfg = data.default_config()           # the `data` section of every experiment config
    spec = data.InputSpec((H, W, C), fields=("image", "label"))
    pipe = data.make_pipeline(cfg, spec, global_batch=B, seed=seed,
                              process_index=0, process_count=1, workdir=None)
    batch = next(pipe.iterate(start_batch=k))   # dict(image=float32 (B / P, H, W, C), label=...)
    pipe.bad_counts(), pipe.whitening, pipe.describe(), pipe.class_names, pipe.num_classes

(The old square form ``make_pipeline(cfg, image_size=S, channels=C, global_batch=B, ...)`` works.)
Sources (``data.source``): ``builtin`` (photos shipped with scikit-image / scikit-learn),
``photos`` (those + 17 photographs other packages ship, requirements-photos.txt), ``folder:<dir>``,
``tfds:<name>[:<split>]``, ``yfcc100m:<metadata file>`` (+ ``data.image_dir``),
``mnist[:train|test|all]``, ``digits[:train|test|all]``.
See docs/data.md. TensorFlow is imported (and hidden from the GPUs) only when the pipeline is
first used, so `config` and `yfcc` stay light.
"""

from __future__ import annotations

import importlib

from livermore_brain.data.config import default_config
from livermore_brain.data.spec import FIELDS, InputSpec

_LAZY = {
  "Pipeline": "livermore_brain.data.pipeline",
  "make_pipeline": "livermore_brain.data.build",
  "measure_throughput": "livermore_brain.data.build",
  "summarize_bad_counts": "livermore_brain.data.order",
  "Whitening": "livermore_brain.data.whitening",
  "parse_line": "livermore_brain.data.yfcc",
  "Record": "livermore_brain.data.yfcc",
}

__all__ = ["FIELDS", "InputSpec", "default_config", *_LAZY]


def __getattr__(name: str):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'livermore_brain.data' has no attribute {name!r}")
