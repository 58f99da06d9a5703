"""Helpers every splat format module shares: atomic output, write-time checks, finite checks, activations,
and reading a whole file with clear errors. Pure numpy + stdlib."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

import numpy as np

from .arrays import SplatArrays
from .errors import SplatFileError

SH_C0 = 0.28209479177387814  # Y_0^0 = 1 / (2 sqrt(pi))
OPACITY_EPS = 1e-6  # decoded opacities are kept in [eps, 1 - eps] so that their logits stay finite


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[object]:
    """Open a temporary file beside `path` for binary writing; it replaces `path` only on success."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SplatFileError(path, f"output folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".splatbrush-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes | memoryview) -> None:
    with atomic_output(path) as f:
        f.write(data)


def checked(arrays: SplatArrays, path: str | os.PathLike) -> None:
    """`arrays.check()` with the problem reported as a SplatFileError naming the output file."""
    try:
        arrays.check()
    except ValueError as e:
        raise SplatFileError(path, f"cannot write: {e}") from None


def nonfinite_report(columns: dict[str, np.ndarray]) -> str | None:
    """None when every column is finite, else e.g. "opacity has 3 NaN/Inf values, scale_0 has 1"."""
    bad = []
    for name, a in columns.items():
        if a.dtype.kind != "f" or a.size == 0:
            continue
        if np.isfinite(a.min()) and np.isfinite(a.max()):  # min/max propagate NaN; no temporary array
            continue
        count = int(a.size - np.count_nonzero(np.isfinite(a)))
        bad.append(f"{name} has {count} NaN/Inf value{'s' if count != 1 else ''}")
    return ", ".join(bad) if bad else None


def check_decoded(path: str | os.PathLike, arrays: SplatArrays, what: str = "after decoding") -> SplatArrays:
    """Raise SplatFileError when a decoded scene has NaN/Inf values (e.g. from corrupt ranges)."""
    report = nonfinite_report(
        {
            "position": arrays.means,
            "rotation": arrays.quats,
            "scale": arrays.log_scales,
            "opacity": arrays.opacity_logits,
            "colour/SH": arrays.sh,
        }
    )
    if report:
        raise SplatFileError(path, f"non-finite values {what}: {report}")
    return arrays


def read_file_bytes(path: str | os.PathLike) -> bytes:
    """The whole file, with missing files and folders reported as SplatFileError."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise SplatFileError(path, "file not found") from None
    except IsADirectoryError:
        raise SplatFileError(path, "is a directory, not a splat file") from None


def sigmoid(x: np.ndarray) -> np.ndarray:
    """float64 logistic function without overflow warnings."""
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def logit(alpha: np.ndarray) -> np.ndarray:
    """float32 logits of opacities, clipped to [OPACITY_EPS, 1 - OPACITY_EPS] first."""
    a = np.clip(np.asarray(alpha, np.float64), OPACITY_EPS, 1.0 - OPACITY_EPS)
    return np.log(a / (1.0 - a)).astype(np.float32)


def unit_quats(quats: np.ndarray) -> np.ndarray:
    """[N, 4] float64 unit quaternions (a zero quaternion becomes the identity (1, 0, 0, 0))."""
    q = np.asarray(quats, np.float64)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    out = np.where(norm > 0, q / np.where(norm > 0, norm, 1.0), 0.0)
    out[norm[:, 0] == 0, 0] = 1.0
    return out


def new_arrays(n: int, k: int) -> SplatArrays:
    """Uninitialised float32 arrays for N Gaussians with K SH coefficients per channel."""
    return SplatArrays(
        means=np.empty((n, 3), np.float32),
        quats=np.empty((n, 4), np.float32),
        log_scales=np.empty((n, 3), np.float32),
        opacity_logits=np.empty(n, np.float32),
        sh=np.empty((n, k, 3), np.float32),
    )


def sh_coeffs_for_degree(degree: int) -> int:
    return (degree + 1) ** 2


def optional_module(path: str | os.PathLike | None, module: str, purpose: str, package: str | None = None):
    """Import an optional dependency, or raise SplatFileError naming the file, what the package is for and
    how to install it (so that the CLI and Blender show one clear message, not an ImportError)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        name = package or module
        raise SplatFileError(
            path, f"{purpose} needs the Python package {name!r}, which is not installed (pip install {name})"
        ) from None
