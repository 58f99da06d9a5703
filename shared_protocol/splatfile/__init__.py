"""3DGS scene files as numpy arrays: INRIA .ply (binary, ASCII, big-endian), PlayCanvas .compressed.ply,
antimatter15 .splat, Niantic .spz (v1-v4), PlayCanvas SOG (.sog or meta.json + WebP), glTF/GLB with
KHR_gaussian_splatting.

Pure numpy so that the engine and the Blender add-on (which has no torch) share one implementation; optional
packages (zstandard for .spz v4, Pillow for SOG's WebP images, plyfile for ASCII/big-endian .ply) are imported
only when a file needs them, with a SplatFileError saying what to install. `read_splats(path)` /
`write_splats(arrays, path)` handle every format (`registry.SPLAT_FORMATS`); errors are `SplatFileError`.
"""

from .arrays import GAUSSIAN_FIELDS, SplatArrays
from .compressed_ply import read_compressed_ply, write_compressed_ply
from .errors import SplatFileError
from .gltf import read_gltf, write_gltf
from .io import (
    FILE_GLOB_READ,
    FILE_GLOB_WRITE,
    READ_EXTENSIONS,
    READ_NAMES,
    WRITE_EXTENSIONS,
    detect_format,
    output_format,
    read_splats,
    write_splats,
)
from .ply import fuse_filter_3d, read_ply, write_ply
from .registry import SPLAT_FORMATS, SplatFormat, register_format
from .sog import read_sog, write_sog
from .splat import read_splat, write_splat
from .spz import read_spz, write_spz

__all__ = [
    "FILE_GLOB_READ",
    "FILE_GLOB_WRITE",
    "GAUSSIAN_FIELDS",
    "READ_EXTENSIONS",
    "READ_NAMES",
    "SPLAT_FORMATS",
    "WRITE_EXTENSIONS",
    "SplatArrays",
    "SplatFileError",
    "SplatFormat",
    "detect_format",
    "fuse_filter_3d",
    "output_format",
    "read_compressed_ply",
    "read_gltf",
    "read_ply",
    "read_sog",
    "read_splat",
    "read_splats",
    "read_spz",
    "register_format",
    "write_compressed_ply",
    "write_gltf",
    "write_ply",
    "write_sog",
    "write_splat",
    "write_splats",
    "write_spz",
]
