"""`read_splats` / `write_splats`: one entry point for every splat file format (see `registry`).

    arrays = read_splats("scene.spz")                 # format from the file's magic bytes, then its extension
    write_splats(arrays, "scene.sog")                  # format from the output extension
    write_splats(arrays, "scene.spz", version=4)       # writer options: SPLAT_FORMATS[name].write_options

`READ_EXTENSIONS`, `WRITE_EXTENSIONS` (and `READ_NAMES`: "meta.json") come from the registry; `FILE_GLOB_READ`
/ `FILE_GLOB_WRITE` are ready for a file dialog filter ("*.ply;*.splat;..."). Errors are `SplatFileError`.
"""

from __future__ import annotations

import os

from .arrays import SplatArrays
from .registry import (
    SPLAT_FORMATS,
    format_for_output,
    read_extensions,
    read_names,
    sniff_format,
    write_extensions,
)

FORMATS = tuple(SPLAT_FORMATS)
READ_EXTENSIONS = read_extensions()
WRITE_EXTENSIONS = write_extensions()
READ_NAMES = read_names()
FILE_GLOB_READ = ";".join([f"*{e}" for e in READ_EXTENSIONS] + list(READ_NAMES))
FILE_GLOB_WRITE = ";".join([f"*{e}" for e in WRITE_EXTENSIONS] + list(READ_NAMES))


def detect_format(path: str | os.PathLike) -> str:
    """The registry name ("ply", "compressed_ply", "spz", "sog", "gltf", "splat") of an existing file or
    unbundled SOG folder; SplatFileError when it is none of them."""
    return sniff_format(path).name


def output_format(path: str | os.PathLike) -> str:
    """The registry name of the format an output path asks for; SplatFileError for ones we cannot write."""
    return format_for_output(path).name


def read_splats(path: str | os.PathLike, check_finite: bool = True, format: str | None = None) -> SplatArrays:
    """Read any supported splat file into `SplatArrays` (float32, raw parameters). `format`: skip sniffing."""
    fmt = SPLAT_FORMATS[format] if format else sniff_format(path)
    return fmt.read(path, check_finite=check_finite)


def write_splats(arrays: SplatArrays, path: str | os.PathLike, format: str | None = None, **options) -> None:
    """Write `arrays` in the format the extension names (or `format`); replaces the file atomically.
    `options` go to the format's writer (e.g. `version=4` for .spz, `morton=False` for .compressed.ply)."""
    fmt = SPLAT_FORMATS[format] if format else format_for_output(path)
    fmt.write(arrays, path, **options)
