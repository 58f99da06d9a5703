"""3DGS scene files as numpy arrays: INRIA .ply, PlayCanvas .compressed.ply, antimatter15 .splat.

Pure numpy so that the engine and the Blender add-on (which has no torch) share one implementation.
"""

from .arrays import GAUSSIAN_FIELDS, SplatArrays

__all__ = ["GAUSSIAN_FIELDS", "SplatArrays"]
