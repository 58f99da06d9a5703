"""`read_splats` / `write_splats`: one entry point for every splat file format.

Reading looks at the file itself first: a file starting with "ply" is an INRIA-style .ply or, when its
header has a `chunk` element and packed vertex properties, a PlayCanvas compressed .ply; otherwise the
extension decides (`.splat`). Writing goes by the extension: `.ply` (INRIA) or `.splat`.
`.compressed.ply` cannot be written.
"""

from __future__ import annotations

import os

from .arrays import SplatArrays
from .compressed_ply import is_compressed_ply_header, read_compressed_ply
from .errors import SplatFileError
from .ply import read_ply, read_ply_header, write_ply
from .splat import read_splat, write_splat

FORMATS = ("ply", "compressed_ply", "splat")
READ_EXTENSIONS = (".ply", ".compressed.ply", ".splat")
WRITE_EXTENSIONS = (".ply", ".splat")


def _starts_with_ply(path: str | os.PathLike) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) in (b"ply\n", b"ply\r")
    except FileNotFoundError:
        raise SplatFileError(path, "file not found") from None
    except IsADirectoryError:
        raise SplatFileError(path, "is a directory, not a splat file") from None


def detect_format(path: str | os.PathLike) -> str:
    """ "ply", "compressed_ply" or "splat" for an existing file; SplatFileError when it is none of them."""
    name = os.fspath(path).lower()
    if _starts_with_ply(path):
        return "compressed_ply" if is_compressed_ply_header(read_ply_header(path)) else "ply"
    if name.endswith(".splat"):
        return "splat"
    if name.endswith(".ply"):
        raise SplatFileError(path, "not a PLY file: it does not start with 'ply'")
    ext = os.path.splitext(name)[1] or "(none)"
    raise SplatFileError(
        path,
        f"unknown splat file type {ext}: expected {', '.join(READ_EXTENSIONS)} (or a file starting 'ply')",
    )


def read_splats(path: str | os.PathLike, check_finite: bool = True) -> SplatArrays:
    """Read any supported splat file into `SplatArrays` (float32, raw parameters)."""
    fmt = detect_format(path)
    if fmt == "ply":
        return read_ply(path, check_finite=check_finite)
    if fmt == "compressed_ply":
        return read_compressed_ply(path, check_finite=check_finite)
    return read_splat(path, check_finite=check_finite)


def output_format(path: str | os.PathLike) -> str:
    """ "ply" or "splat" for an output path; SplatFileError for extensions we cannot write."""
    name = os.fspath(path).lower()
    if name.endswith(".compressed.ply"):
        raise SplatFileError(
            path, "writing PlayCanvas .compressed.ply is not supported: write .ply or .splat instead"
        )
    if name.endswith(".ply"):
        return "ply"
    if name.endswith(".splat"):
        return "splat"
    ext = os.path.splitext(name)[1] or "(none)"
    raise SplatFileError(path, f"cannot write a {ext} file: use one of {', '.join(WRITE_EXTENSIONS)}")


def write_splats(arrays: SplatArrays, path: str | os.PathLike) -> None:
    """Write `arrays` in the format the extension names (.ply or .splat); replaces the file atomically."""
    if output_format(path) == "ply":
        write_ply(arrays, path)
    else:
        write_splat(arrays, path)
