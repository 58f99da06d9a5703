"""NeRF / instant-ngp / nerfstudio `transforms.json`.

    {"camera_angle_x" | "fl_x", "fl_y", "cx", "cy", "w", "h",   (top level, or per frame: per frame wins)
     "frames": [{"file_path", "transform_matrix": 4x4 camera-to-world, OpenGL/Blender axes}, ...]}

OpenGL camera axes: x right, y up, z backward; OpenCV camera-to-world = transform_matrix @ diag(1,-1,-1,1).
Intrinsics: fl_x wins over camera_angle_x (fx = w / 2 / tan(camera_angle_x / 2)); fy = fl_y, else from
camera_angle_y, else fx; cx, cy default to the image centre. Without "w"/"h" (the original Blender synthetic
scenes) the size is read from the image at file_path (tried as given, then with .png/.jpg/.jpeg appended).
Distortion coefficients are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._files import as_array, as_positive, as_size, field, nearest_rotation, read_json, write_json
from .camera import Camera, CameraError

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
_INTRINSIC_KEYS = ("camera_angle_x", "camera_angle_y", "fl_x", "fl_y", "cx", "cy", "w", "h")


def _image_size(path: Path, file_path: str, where: str) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    base = path.parent / file_path
    for candidate in (base, *(base.with_name(base.name + ext) for ext in (".png", ".jpg", ".jpeg"))):
        if candidate.is_file():
            try:
                with Image.open(candidate) as im:
                    return im.size
            except (UnidentifiedImageError, OSError) as e:
                raise CameraError(
                    f"{path}: {where}: could not read image size from {candidate}: {e}"
                ) from None
    raise CameraError(
        f'{path}: {where} has no image size: add "w" and "h" to the file, or put its image at {base}[.png]'
    )


def _frame_to_camera(frame: dict, top: dict, index: int, path: Path) -> Camera:
    where = f"frame {index}"
    if not isinstance(frame, dict):
        raise CameraError(f"{path}: {where} must be a JSON object, got {type(frame).__name__}")
    intr = {k: top[k] for k in _INTRINSIC_KEYS if k in top}
    intr.update({k: frame[k] for k in _INTRINSIC_KEYS if k in frame})
    file_path = str(frame.get("file_path", f"frame_{index:03d}"))
    if "w" in intr and "h" in intr:
        width, height = as_size(intr["w"], f"{where} w", path), as_size(intr["h"], f"{where} h", path)
    else:
        width, height = _image_size(path, file_path, where)
    if "fl_x" in intr:
        fx = as_positive(intr["fl_x"], f"{where} fl_x", path)
    elif "camera_angle_x" in intr:
        angle = as_positive(intr["camera_angle_x"], f"{where} camera_angle_x", path)
        fx = 0.5 * width / math.tan(angle / 2)
    else:
        raise CameraError(f'{path}: {where} has no focal length: need "fl_x" or "camera_angle_x"')
    if "fl_y" in intr:
        fy = as_positive(intr["fl_y"], f"{where} fl_y", path)
    elif "camera_angle_y" in intr:
        fy = 0.5 * height / math.tan(as_positive(intr["camera_angle_y"], f"{where} camera_angle_y", path) / 2)
    else:
        fy = fx
    cx, cy = float(intr.get("cx", width / 2)), float(intr.get("cy", height / 2))

    raw = np.asarray(field(frame, "transform_matrix", where, path), dtype=object)
    shape = (3, 4) if raw.shape == (3, 4) else (4, 4)
    m = as_array(frame["transform_matrix"], shape, f"{where} transform_matrix", path)
    if shape == (3, 4):
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    elif not np.allclose(m[3], [0, 0, 0, 1]):
        raise CameraError(
            f"{path}: {where} transform_matrix's last row must be [0, 0, 0, 1], got {m[3].tolist()}"
        )
    c2w = m @ OPENGL_TO_OPENCV
    rotation = nearest_rotation(c2w[:3, :3], f"{where} transform_matrix rotation", path)
    w2c = np.eye(4)
    w2c[:3, :3] = rotation.T
    w2c[:3, 3] = -rotation.T @ c2w[:3, 3]
    try:
        return Camera(w2c, fx, fy, cx, cy, width, height, Path(file_path).stem or file_path)
    except CameraError as e:
        raise CameraError(f"{path}: {where}: {e}") from None


def read_nerf_cameras(path: str | Path, data: dict | None = None) -> list[Camera]:
    """Cameras from a NeRF `transforms.json` (`data`: the already parsed JSON, if the caller has it)."""
    path = Path(path)
    data = read_json(path) if data is None else data
    frames = field(data, "frames", "the transforms file", path)
    if not isinstance(frames, list):
        raise CameraError(f'{path}: "frames" must be a list, got {type(frames).__name__}')
    if not frames:
        raise CameraError(f'{path}: "frames" is empty')
    return [_frame_to_camera(f, data, i, path) for i, f in enumerate(frames)]


def _intrinsics(camera: Camera) -> dict:
    return {
        "camera_angle_x": camera.fov_x,
        "fl_x": camera.fx,
        "fl_y": camera.fy,
        "cx": camera.cx,
        "cy": camera.cy,
        "w": camera.width,
        "h": camera.height,
    }


def write_nerf_cameras(path: str | Path, cameras: Sequence[Camera]) -> Path:
    """Write a transforms.json; shared intrinsics go to the top level, differing ones into each frame."""
    if not cameras:
        raise CameraError(f"{path}: refusing to write an empty camera list")
    intrinsics = [_intrinsics(c) for c in cameras]
    shared = all(i == intrinsics[0] for i in intrinsics)
    data: dict = dict(intrinsics[0]) if shared else {}
    frames = []
    for i, (cam, intr) in enumerate(zip(cameras, intrinsics, strict=True)):
        frame = {
            "file_path": cam.name or f"view_{i:03d}",
            "transform_matrix": (cam.camera_to_world @ OPENGL_TO_OPENCV).tolist(),
        }
        if not shared:
            frame.update(intr)
        frames.append(frame)
    data["frames"] = frames
    return write_json(Path(path), data)
