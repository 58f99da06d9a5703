"""3DGS scene files as numpy arrays: INRIA .ply, PlayCanvas .compressed.ply, antimatter15 .splat.

Pure numpy so that the engine and the Blender add-on (which has no torch) share one implementation.
`read_splats(path)` / `write_splats(arrays, path)` handle every format; errors are `SplatFileError`.
"""

from .arrays import GAUSSIAN_FIELDS, SplatArrays
from .compressed_ply import read_compressed_ply
from .errors import SplatFileError
from .io import detect_format, read_splats, write_splats
from .ply import fuse_filter_3d, read_ply, write_ply
from .splat import read_splat, write_splat

__all__ = [
    "GAUSSIAN_FIELDS",
    "SplatArrays",
    "SplatFileError",
    "detect_format",
    "fuse_filter_3d",
    "read_compressed_ply",
    "read_ply",
    "read_splat",
    "read_splats",
    "write_ply",
    "write_splat",
    "write_splats",
]
