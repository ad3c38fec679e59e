"""The RICA brain family (Ni et al. 2015): greedy, pipelined layer-wise training of untied RICA
layers as a `train.task.Task`.

* `task` — `RicaTask`: one compiled step per pipeline stage, forward-copy syncs, filter figures;
* `step`, `state`, `schedule` — the jitted step, the `TrainState` with forward copies, the
  greedy pipeline;
* `run` — load a RICA run directory; `features` — `BrainFeatures`, any layer's features.

The building blocks (RICA cost, geometry, LCN) are in `livermore_brain.layers`, the network spec
and presets in `livermore_brain.models`.
"""
