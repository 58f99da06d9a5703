"""INRIA 3DGS `cameras.json`: a list of
    {"id", "img_name", "width", "height", "position": [3], "rotation": [[3], [3], [3]], "fx", "fy"}
where rotation (row-major) and position form the camera-to-world transform in OpenCV axes (COLMAP's).
INRIA assumes the principal point at the image centre; we also read and write optional "cx", "cy" keys
(written only when the principal point is off-centre; other tools ignore them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ._files import (
    as_array,
    as_positive,
    as_size,
    field,
    nearest_rotation,
    read_json,
    world_to_camera_from_c2w,
    write_json,
)
from .camera import Camera, CameraError


def inria_entry_to_camera(entry: dict, index: int, path: Path) -> Camera:
    where = f"camera {index}"
    width = as_size(field(entry, "width", where, path), f"{where} width", path)
    height = as_size(field(entry, "height", where, path), f"{where} height", path)
    rotation = as_array(field(entry, "rotation", where, path), (3, 3), f"{where} rotation", path)
    position = as_array(field(entry, "position", where, path), (3,), f"{where} position", path)
    fx = as_positive(field(entry, "fx", where, path), f"{where} fx", path)
    fy = as_positive(field(entry, "fy", where, path), f"{where} fy", path)
    cx = float(entry.get("cx", width / 2))
    cy = float(entry.get("cy", height / 2))
    name = str(entry.get("img_name", entry.get("id", index)))
    w2c = world_to_camera_from_c2w(nearest_rotation(rotation, f"{where} rotation", path), position)
    try:
        return Camera(w2c, fx, fy, cx, cy, width, height, name)
    except CameraError as e:
        raise CameraError(f"{path}: {where}: {e}") from None


def read_inria_cameras(path: str | Path, data: list | None = None) -> list[Camera]:
    """Cameras from an INRIA `cameras.json` (`data`: the already parsed JSON, if the caller has it)."""
    path = Path(path)
    data = read_json(path) if data is None else data
    if not isinstance(data, list):
        raise CameraError(f"{path}: an INRIA cameras.json must hold a JSON list of cameras")
    if not data:
        raise CameraError(f"{path}: the camera list is empty")
    return [inria_entry_to_camera(entry, i, path) for i, entry in enumerate(data)]


def camera_to_inria_entry(camera: Camera, index: int) -> dict:
    c2w = camera.camera_to_world
    entry = {
        "id": index,
        "img_name": camera.name or f"view_{index:03d}",
        "width": camera.width,
        "height": camera.height,
        "position": c2w[:3, 3].tolist(),
        "rotation": c2w[:3, :3].tolist(),
        "fy": camera.fy,
        "fx": camera.fx,
    }
    if abs(camera.cx - camera.width / 2) > 1e-9 or abs(camera.cy - camera.height / 2) > 1e-9:
        entry["cx"], entry["cy"] = camera.cx, camera.cy
    return entry


def write_inria_cameras(path: str | Path, cameras: Sequence[Camera]) -> Path:
    if not cameras:
        raise CameraError(f"{path}: refusing to write an empty camera list")
    return write_json(Path(path), [camera_to_inria_entry(c, i) for i, c in enumerate(cameras)])
