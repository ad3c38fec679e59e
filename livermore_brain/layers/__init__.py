"""Pure-functional layers: untied local geometry, the RICA cost, local contrast normalization."""

from livermore_brain.layers import geometry, lcn, rica

__all__ = ["geometry", "lcn", "rica"]
