"""Helpers shared by the camera file readers: JSON loading and field checks with errors naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .camera import CameraError


def read_json(path: Path):
    if not path.exists():
        raise CameraError(f"{path}: camera file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CameraError(f"{path}: not a text (JSON) file") from None
    except json.JSONDecodeError as e:
        raise CameraError(f"{path}: not valid JSON ({e})") from None


def write_json(path: Path, data) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def field(entry: dict, key: str, where: str, path: Path):
    if not isinstance(entry, dict):
        raise CameraError(f"{path}: {where} must be a JSON object, got {type(entry).__name__}")
    if key not in entry:
        raise CameraError(f"{path}: {where} is missing the key {key!r}")
    return entry[key]


def as_array(value, shape: tuple[int, ...], what: str, path: Path) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CameraError(f"{path}: {what} must be numbers of shape {shape}, got {value!r:.80}") from None
    if arr.shape != shape:
        raise CameraError(f"{path}: {what} must have shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise CameraError(f"{path}: {what} has non-finite values")
    return arr


def as_positive(value, what: str, path: Path) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise CameraError(f"{path}: {what} must be a number, got {value!r:.80}") from None
    if not (np.isfinite(v) and v > 0):
        raise CameraError(f"{path}: {what} must be a positive finite number, got {v}")
    return v


def as_size(value, what: str, path: Path) -> int:
    v = as_positive(value, what, path)
    if v != int(v):
        raise CameraError(f"{path}: {what} must be a whole number of pixels, got {v}")
    return int(v)


def nearest_rotation(r: np.ndarray, what: str, path: Path, tol: float = 1e-3) -> np.ndarray:  # [3, 3]
    """Re-orthonormalise a rotation stored with limited precision; reject anything that is not one."""
    if not np.allclose(r @ r.T, np.eye(3), atol=tol) or np.linalg.det(r) <= 0:
        raise CameraError(f"{path}: {what} is not a rotation matrix (orthonormal, determinant +1)")
    u, _, vt = np.linalg.svd(r)
    return u @ vt


def world_to_camera_from_c2w(rotation: np.ndarray, position: np.ndarray) -> np.ndarray:  # [4, 4]
    m = np.eye(4)
    m[:3, :3] = rotation.T
    m[:3, 3] = -rotation.T @ position
    return m
