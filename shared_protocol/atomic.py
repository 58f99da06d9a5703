"""Atomic file writes: the one helper every Splatbrush writer uses (engine, CLI, add-on).

    with atomic_open("out.ply") as f:          # a temporary file beside the target ...
        f.write(data)                           # ... replaces it only when the block ends without error
    atomic_write_bytes(path, data, mode=0o600)  # e.g. a secret key: created 0600, never readable by others
    atomic_write_text(path, text)
    atomic_write_json(path, obj)
    remove_partials(folder, older_than_s=3600)  # temporary files a killed writer left behind

The temporary file is `.<name>.<random>.part` in the target's folder (same filesystem, so `os.replace` is
atomic), created 0600 by `tempfile.mkstemp`. Its final mode is `mode` when given, else the mode of the file it
replaces (so overwriting a 0644 file keeps 0644), else 0666 minus the umask, like `open()`. Data is fsynced
before the rename and the folder after it, so a crash leaves the old file or the new one, never a torn one.
Pure Python: no numpy needed, nothing imported at import time beyond the standard library.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

PART_SUFFIX = ".part"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _final_mode(path: str, mode: int | None) -> int:
    if mode is not None:
        return mode
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _fsync_dir(folder: str) -> None:
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike, mode: int | None = None, fsync: bool = True, text: bool = False
) -> Iterator[IO[Any]]:
    """Open a temporary file beside `path` for writing (binary, or UTF-8 text with `text=True`); on a clean
    exit it is fsynced, given its final permissions (see the module doc) and renamed over `path`. On any
    error (including KeyboardInterrupt) the temporary file is removed and `path` is untouched."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    final = _final_mode(path, mode)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=PART_SUFFIX, dir=folder)
    try:
        with os.fdopen(fd, "w" if text else "wb", **({"encoding": "utf-8"} if text else {})) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), final)
        if not hasattr(os, "fchmod"):  # Windows: only the read-only bit means anything there
            os.chmod(tmp, final)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        _fsync_dir(folder)


def atomic_write_bytes(
    path: str | os.PathLike, data: bytes, mode: int | None = None, fsync: bool = True
) -> None:
    """Write `data` to `path` atomically (see atomic_open)."""
    with atomic_open(path, mode, fsync) as f:
        f.write(data)


def atomic_write_text(
    path: str | os.PathLike, text: str, mode: int | None = None, fsync: bool = True
) -> None:
    """Write UTF-8 `text` to `path` atomically (see atomic_open)."""
    atomic_write_bytes(path, text.encode("utf-8"), mode, fsync)


def atomic_write_json(
    path: str | os.PathLike, obj: Any, mode: int | None = None, fsync: bool = True, indent: int | None = 1
) -> None:
    """Write `obj` as JSON (NaN/Inf refused: ValueError) to `path` atomically."""
    atomic_write_bytes(path, json.dumps(obj, indent=indent, allow_nan=False).encode("utf-8"), mode, fsync)


def remove_partials(
    folder: str | os.PathLike, older_than_s: float = 0.0, recursive: bool = False
) -> list[Path]:
    """Delete the temporary `.<name>.<random>.part` files atomic_open leaves when its process is killed,
    when older than `older_than_s` (0: all; a live writer's file is young). Returns the removed paths."""
    root = Path(folder)
    if not root.is_dir():
        return []
    pattern = f"**/.*{PART_SUFFIX}" if recursive else f".*{PART_SUFFIX}"
    now, removed = time.time(), []
    for p in root.glob(pattern):
        with contextlib.suppress(OSError):
            if p.is_file() and not p.is_symlink() and now - p.stat().st_mtime >= older_than_s:
                p.unlink()
                removed.append(p)
    return removed


__all__ = [
    "PART_SUFFIX",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "remove_partials",
]
