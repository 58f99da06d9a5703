"""Load and save camera lists, detecting the file format.

load_cameras(path) -> list[Camera]
    *.npz                   gsplat-style arrays: viewmats [N, 4, 4] world-to-camera (OpenCV), Ks [N, 3, 3],
                            width, height (scalars or [N])
    JSON list of {rotation, position, ...}   INRIA 3DGS cameras.json
    JSON {frames: [...]}                     NeRF / nerfstudio transforms.json
    JSON {cameras: [Camera.to_dict(), ...]}  (or a bare list of those) Splatbrush's own form
    a folder                                 its cameras.json, transforms.json or transforms_train.json
save_cameras(path, cameras, format=None)
    format "inria" | "nerf" | "splatbrush" | "npz"; by default "npz" for *.npz, "nerf" when the file name
    starts with "transforms", else "inria".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._files import read_json, write_json
from .camera import Camera, CameraError
from .inria import read_inria_cameras, write_inria_cameras
from .nerf import read_nerf_cameras, write_nerf_cameras

FORMATS = ("inria", "nerf", "splatbrush", "npz")
NATIVE_FORMAT = "splatbrush-cameras"
_FOLDER_FILES = ("cameras.json", "transforms.json", "transforms_train.json")


def _read_npz(path: Path) -> list[Camera]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise CameraError(f"{path}: not a readable .npz file ({e})") from None
    missing = [k for k in ("viewmats", "Ks", "width", "height") if k not in arrays]
    if missing:
        raise CameraError(f"{path}: .npz camera file is missing {missing} (has {sorted(arrays)})")
    viewmats = np.asarray(arrays["viewmats"], dtype=np.float64)
    ks = np.asarray(arrays["Ks"], dtype=np.float64)
    if viewmats.ndim != 3 or viewmats.shape[1:] != (4, 4) or viewmats.shape[0] == 0:
        raise CameraError(f"{path}: viewmats must have shape [N, 4, 4] with N > 0, got {viewmats.shape}")
    n = viewmats.shape[0]
    if ks.shape != (n, 3, 3):
        raise CameraError(f"{path}: Ks must have shape [{n}, 3, 3] to match viewmats, got {ks.shape}")
    widths = (
        np.broadcast_to(np.asarray(arrays["width"]).reshape(-1), (n,))
        if arrays["width"].size in (1, n)
        else None
    )
    heights = (
        np.broadcast_to(np.asarray(arrays["height"]).reshape(-1), (n,))
        if arrays["height"].size in (1, n)
        else None
    )
    if widths is None or heights is None:
        raise CameraError(f"{path}: width and height must be one value or one per camera ({n})")
    if not (np.isfinite(viewmats).all() and np.isfinite(ks).all()):
        raise CameraError(f"{path}: viewmats or Ks have non-finite values")
    names = (
        [str(s) for s in arrays["names"].reshape(-1)] if arrays.get("names", np.zeros(0)).size == n else None
    )
    cameras = []
    for i in range(n):
        m = viewmats[i].copy()
        u, _, vt = np.linalg.svd(m[:3, :3])  # float32 storage: restore an exact rotation
        if np.allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-3) and np.linalg.det(m[:3, :3]) > 0:
            m[:3, :3] = u @ vt
        k = ks[i]
        try:
            cameras.append(
                Camera(
                    m,
                    k[0, 0],
                    k[1, 1],
                    k[0, 2],
                    k[1, 2],
                    int(widths[i]),
                    int(heights[i]),
                    names[i] if names else f"cam_{i:03d}",
                )
            )
        except CameraError as e:
            raise CameraError(f"{path}: camera {i}: {e}") from None
    return cameras


def _write_npz(path: Path, cameras: Sequence[Camera]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # a file object keeps the exact name (np.savez would append .npz)
        np.savez(
            f,
            viewmats=np.stack([c.world_to_camera for c in cameras]),
            Ks=np.stack([c.K for c in cameras]),
            width=np.array([c.width for c in cameras]),
            height=np.array([c.height for c in cameras]),
            names=np.array([c.name for c in cameras]),
        )
    return path


def _read_native(path: Path, entries) -> list[Camera]:
    if not isinstance(entries, list):
        raise CameraError(f'{path}: "cameras" must be a list, got {type(entries).__name__}')
    if not entries:
        raise CameraError(f"{path}: the camera list is empty")
    cameras = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise CameraError(f"{path}: camera {i} must be a JSON object, got {type(entry).__name__}")
        try:
            cameras.append(Camera.from_dict(entry))
        except CameraError as e:
            raise CameraError(f"{path}: camera {i}: {e}") from None
    return cameras


def load_cameras(path: str | Path) -> list[Camera]:
    """Read cameras from any supported file (see the module docstring), in the file's order."""
    path = Path(path)
    if path.is_dir():
        for name in _FOLDER_FILES:
            if (path / name).is_file():
                return load_cameras(path / name)
        raise CameraError(f"{path}: folder has none of {', '.join(_FOLDER_FILES)}")
    if not path.exists():
        raise CameraError(f"{path}: camera file not found")
    if path.suffix.lower() == ".npz":
        return _read_npz(path)
    data = read_json(path)
    if isinstance(data, list):
        if not data:
            raise CameraError(f"{path}: the camera list is empty")
        first = data[0]
        if isinstance(first, dict) and "world_to_camera" in first:
            return _read_native(path, data)
        if isinstance(first, dict) and ("rotation" in first or "position" in first):
            return read_inria_cameras(path, data)
        raise CameraError(
            f"{path}: a JSON list of cameras must hold INRIA entries (rotation, position, fx, fy, width, "
            f"height) or Splatbrush entries (world_to_camera, fx, fy, cx, cy, width, height)"
        )
    if isinstance(data, dict):
        if "frames" in data:
            return read_nerf_cameras(path, data)
        if "cameras" in data:
            return _read_native(path, data["cameras"])
    raise CameraError(
        f"{path}: unrecognised camera file: expected an INRIA cameras.json (a list), a NeRF transforms.json "
        f'(an object with "frames") or a Splatbrush camera file (an object with "cameras")'
    )


def _format_for(path: Path, format: str | None) -> str:
    if format is not None:
        if format not in FORMATS:
            raise CameraError(f"unknown camera format {format!r}; choose one of {', '.join(FORMATS)}")
        return format
    if path.suffix.lower() == ".npz":
        return "npz"
    if path.name.lower().startswith("transforms"):
        return "nerf"
    return "inria"


def save_cameras(path: str | Path, cameras: Sequence[Camera], format: str | None = None) -> Path:
    """Write `cameras`; the format defaults from the file name (see the module docstring)."""
    path = Path(path)
    cameras = list(cameras)
    if not cameras:
        raise CameraError(f"{path}: refusing to write an empty camera list")
    fmt = _format_for(path, format)
    if fmt == "inria":
        return write_inria_cameras(path, cameras)
    if fmt == "nerf":
        return write_nerf_cameras(path, cameras)
    if fmt == "npz":
        return _write_npz(path, cameras)
    return write_json(
        path, {"format": NATIVE_FORMAT, "version": 1, "cameras": [c.to_dict() for c in cameras]}
    )
