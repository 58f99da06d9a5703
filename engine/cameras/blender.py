"""Blender cameras <-> `Camera`: a thin wrapper over `shared_protocol.cameras` (pure numpy), which the
Blender add-on vendors, so both sides use one implementation. See docs/cameras.md for the conventions.
"""

from __future__ import annotations

from shared_protocol.cameras import BlenderCameraError, blender_to_opencv, opencv_to_blender

from .camera import Camera, CameraError


def camera_from_blender(
    matrix_world,  # [4, 4] the camera object's world matrix (any object scale is removed)
    lens_mm: float,
    sensor_width: float,
    sensor_height: float,
    sensor_fit: str,  # 'AUTO' | 'HORIZONTAL' | 'VERTICAL'
    resolution_x: int,
    resolution_y: int,
    resolution_percentage: float = 100,
    shift_x: float = 0.0,
    shift_y: float = 0.0,
    pixel_aspect_x: float = 1.0,
    pixel_aspect_y: float = 1.0,
    name: str = "",
) -> Camera:
    """The OpenCV `Camera` that sees exactly what Blender renders from this perspective camera."""
    try:
        d = blender_to_opencv(
            matrix_world, lens_mm, sensor_width, sensor_height, sensor_fit, resolution_x, resolution_y,
            resolution_percentage, shift_x, shift_y, pixel_aspect_x, pixel_aspect_y, name,
        )  # fmt: skip
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
