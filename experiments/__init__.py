"""Entry points: ``python -m experiments.<name>``.

Importing this package (which ``python -m`` does before the module itself) applies the CPU
process settings of `livermore_brain.cpu_tuning` while JAX has not started yet; set
``LB_CPU_TUNING=0`` to run without them.
"""

from livermore_brain import cpu_tuning

cpu_tuning.apply()
