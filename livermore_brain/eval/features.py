"""Run a feature function over a whole array in fixed-size batches, on the host's default device.

``fn`` maps a batch of inputs ``(B, ...)`` to features ``(B, ...)`` (e.g. ``lambda x:
brain_features(params, x)``); it is jitted once and every batch is padded to ``batch_size`` so
it compiles once (so ``fn`` must treat examples independently, as any inference-mode
network does). `stream` yields numpy batches (feed them to `topk.NeuronStats`); `apply`
concatenates them, flattening features to ``(N, M)`` when ``flatten``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import jax
import numpy as np


def stream(fn: Callable, inputs, batch_size: int = 256) -> Iterator[np.ndarray]:
  """Yield ``fn(inputs[i : i + batch_size])`` as numpy arrays, in order."""
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  x = np.asarray(inputs)
  n = x.shape[0]
  jfn = jax.jit(fn)
  bs = min(batch_size, max(n, 1))
  for lo in range(0, n, bs):
    batch = x[lo : lo + bs]
    m = batch.shape[0]
    if m < bs:  # pad the last batch so the function is compiled once
      batch = np.concatenate([batch, np.repeat(batch[-1:], bs - m, axis=0)])
    yield np.asarray(jfn(batch))[:m]


def apply(fn: Callable, inputs, batch_size: int = 256, flatten: bool = True) -> np.ndarray:
  """All of ``fn``'s outputs for ``inputs``, concatenated; ``(N, M)`` when ``flatten``."""
  outs = list(stream(fn, inputs, batch_size))
  if not outs:
    raise ValueError("apply needs at least one input")
  out = np.concatenate(outs)
  return out.reshape(out.shape[0], -1) if flatten else out
