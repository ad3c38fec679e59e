"""Networks built from `livermore_brain.layers`."""
