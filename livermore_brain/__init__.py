"""livermore-brain: a JAX reimplementation of LLNL's 15-billion-parameter RICA network.

Start with `livermore_brain.models.brain` (the network), `livermore_brain.layers` (RICA, geometry,
LCN), `livermore_brain.sharding` (mesh and logical axis rules) and `livermore_brain.train`.
"""

__version__ = "0.1.0"
