"""Evaluation: what did the network learn? Every function takes plain feature arrays, so it serves
any model (RICA layers, a CNN, raw pixels as a baseline), not only the RICA brain.

* `selectivity` — best single-threshold classifier per neuron (Le et al. 2012's "face neuron").
* `topk` — streamed top-k stimuli per neuron and selective-neuron rankings.
* `linear_probe` — L2 logistic-regression probe and the LDRD report's transfer table (Fig. 4).
* `features` — run a feature function over an array in fixed-size batches.
* `optimal_stimulus` — norm-constrained gradient ascent on the input for one neuron.

Submodules are imported explicitly (``from livermore_brain.eval import topk``); the numpy-only
ones (`selectivity`, `topk`) do not import JAX.
"""
