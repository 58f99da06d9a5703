"""Blender cameras <-> `Camera`: a thin wrapper over `shared_protocol.cameras` (pure numpy), which the
Blender add-on vendors, so both sides use one implementation. See docs/cameras.md for the conventions.
"""

from __future__ import annotations

from shared_protocol.cameras import BlenderCamera, BlenderCameraError, opencv_to_blender

from .camera import Camera, CameraError


def camera_from_blender(*args, **kwargs) -> Camera:
    """The OpenCV `Camera` that sees exactly what Blender renders from this perspective camera; the
    arguments are the fields of `shared_protocol.cameras.BlenderCamera` (matrix_world, lens_mm, ...)."""
    name = kwargs.get("name", args[12] if len(args) > 12 else "")
    try:
        d = BlenderCamera(*args, **kwargs).to_opencv()
    except BlenderCameraError as e:
        raise CameraError(f"Blender camera {name!r}: {e}") from None
    return Camera.from_dict(d)


def camera_to_blender(camera: Camera, sensor_width: float = 36.0) -> dict:
    """Blender camera settings (see `shared_protocol.cameras.opencv_to_blender`) reproducing `camera`."""
    try:
        return opencv_to_blender(
            camera.world_to_camera, camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height,
            sensor_width,
        )  # fmt: skip
    except BlenderCameraError as e:
        raise CameraError(f"camera {camera.name!r}: {e}") from None
