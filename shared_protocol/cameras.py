"""Blender <-> OpenCV pinhole camera maths. Pure numpy (no torch, no bpy): the Blender add-on vendors it.

OpenCV camera (what the engine uses): x right, y down, z forward; pixel (u, v) = (fx x/z + cx, fy y/z + cy),
pixel centres at integer + 0.5. The engine's `Camera.to_dict()` form is
    {"name", "world_to_camera": 4x4 nested lists, "fx", "fy", "cx", "cy", "width", "height"}.

Blender camera: looks down its local -Z with +Y up, so
    OpenCV camera-to-world = normalise(matrix_world) @ diag(1, -1, -1, 1).

Blender's intrinsics (mirrors `BKE_camera_params_compute_viewplane`), with the render size
W = floor(resolution_x * percentage / 100), H likewise, and ycor = pixel_aspect_y / pixel_aspect_x:
  * sensor fit: AUTO fits `sensor_width` to the larger of (W * pixel_aspect_x, H * pixel_aspect_y);
    HORIZONTAL fits `sensor_width` to the width; VERTICAL fits `sensor_height` to the height.
  * viewfac = W when the (resolved) fit is horizontal, else ycor * H: the fitted dimension in x-pixel units.
  * fx = lens * viewfac / sensor_size, fy = fx / ycor.
  * shift is in units of the fitted dimension (for AUTO: the larger one):
        cx = W / 2 - shift_x * viewfac,   cy = H / 2 + shift_y * viewfac / ycor.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")
BLENDER_TO_OPENCV_AXES = np.diag([1.0, -1.0, -1.0, 1.0])  # flips camera y and z; its own inverse


class BlenderCameraError(ValueError):
    """Camera parameters that Blender (or the pinhole model) cannot represent; the message names the value."""


def _normalised_rotation(matrix_world) -> np.ndarray:  # -> [4, 4] rigid transform
    m = np.asarray(matrix_world, dtype=np.float64)
    if m.shape != (4, 4):
        raise BlenderCameraError(f"matrix_world must be 4x4, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise BlenderCameraError("matrix_world has non-finite values")
    rs = m[:3, :3]
    norms = np.linalg.norm(rs, axis=0)
    if np.any(norms < 1e-12):
        raise BlenderCameraError(f"matrix_world has a zero scale (column norms {norms.tolist()})")
    if np.linalg.det(rs) <= 0:
        raise BlenderCameraError("matrix_world is mirrored (negative scale): a camera cannot be mirrored")
    u, _, vt = np.linalg.svd(rs / norms)  # nearest rotation: removes scale (and any shear)
    out = np.eye(4)
    out[:3, :3] = u @ vt
    out[:3, 3] = m[:3, 3]
    return out


def _resolved_fit(sensor_fit: str, width_units: float, height_units: float) -> str:
    fit = str(sensor_fit).upper()
    if fit not in SENSOR_FITS:
        raise BlenderCameraError(f"sensor_fit must be one of {SENSOR_FITS}, got {sensor_fit!r}")
    if fit == "AUTO":
        return "HORIZONTAL" if width_units >= height_units else "VERTICAL"
    return fit


def render_size(resolution_x: int, resolution_y: int, resolution_percentage: float = 100) -> tuple[int, int]:
    """Blender's render size in pixels: resolution * percentage / 100, rounded down (at least 1)."""
    if resolution_x <= 0 or resolution_y <= 0 or resolution_percentage <= 0:
        raise BlenderCameraError(
            f"resolution and percentage must be positive, got {resolution_x}x{resolution_y} "
            f"at {resolution_percentage}%"
        )
    return (
        max(1, int(resolution_x * resolution_percentage // 100)),
        max(1, int(resolution_y * resolution_percentage // 100)),
    )


@dataclass
class BlenderCamera:
    """A Blender perspective camera: the one description of its settings, shared by the add-on (which reads
    them off `bpy`), the engine (`engine.cameras.blender`) and the conversions below."""

    matrix_world: Any = field(default_factory=lambda: np.eye(4))
    """[4, 4] the camera object's world matrix (any object scale is removed)."""
    lens_mm: float = 50.0
    """Focal length in millimetres (Camera > Lens)."""
    sensor_width: float = 36.0
    """Sensor width in millimetres."""
    sensor_height: float = 24.0
    """Sensor height in millimetres (used with sensor fit VERTICAL)."""
    sensor_fit: str = "AUTO"
    """'AUTO' | 'HORIZONTAL' | 'VERTICAL'."""
    resolution_x: int = 1920
    """Render > Resolution X (pixels, before the percentage)."""
    resolution_y: int = 1080
    """Render > Resolution Y."""
    resolution_percentage: float = 100
    """Render > Resolution %."""
    shift_x: float = 0.0
    """Lens shift, in units of the fitted sensor dimension."""
    shift_y: float = 0.0
    pixel_aspect_x: float = 1.0
    """Render > Aspect X."""
    pixel_aspect_y: float = 1.0
    name: str = ""
    """The camera object's name (carried into the OpenCV camera)."""

    def to_opencv(self) -> dict:
        """The engine's `Camera.to_dict()` form (JSON-ready nested lists) that sees what Blender renders."""
        for label in ("lens_mm", "sensor_width", "sensor_height", "pixel_aspect_x", "pixel_aspect_y"):
            v = getattr(self, label)
            if not (math.isfinite(v) and v > 0):
                raise BlenderCameraError(f"{label} must be a positive number, got {v}")
        if not (math.isfinite(self.shift_x) and math.isfinite(self.shift_y)):
            raise BlenderCameraError(f"shift must be finite, got ({self.shift_x}, {self.shift_y})")
        w, h = render_size(self.resolution_x, self.resolution_y, self.resolution_percentage)
        ycor = self.pixel_aspect_y / self.pixel_aspect_x
        fit = _resolved_fit(self.sensor_fit, w * self.pixel_aspect_x, h * self.pixel_aspect_y)
        sensor = self.sensor_height if str(self.sensor_fit).upper() == "VERTICAL" else self.sensor_width
        viewfac = w if fit == "HORIZONTAL" else ycor * h
        fx = self.lens_mm * viewfac / sensor
        fy = fx / ycor
        cx = w / 2 - self.shift_x * viewfac
        cy = h / 2 + self.shift_y * viewfac / ycor

        camera_to_world = _normalised_rotation(self.matrix_world) @ BLENDER_TO_OPENCV_AXES
        world_to_camera = np.eye(4)
        world_to_camera[:3, :3] = camera_to_world[:3, :3].T
        world_to_camera[:3, 3] = -camera_to_world[:3, :3].T @ camera_to_world[:3, 3]
        return {
            "name": self.name,
            "world_to_camera": world_to_camera.tolist(),
            "fx": float(fx),
            "fy": float(fy),
            "cx": float(cx),
            "cy": float(cy),
            "width": int(w),
            "height": int(h),
        }

    @classmethod
    def from_opencv(
        cls, world_to_camera, fx: float, fy: float, cx: float, cy: float, width: int, height: int,
        sensor_width: float = 36.0, name: str = "",
    ) -> BlenderCamera:  # fmt: skip
        """The Blender camera (sensor fit AUTO, 100 %) reproducing an OpenCV pinhole camera. fx != fy becomes
        a non-square pixel aspect (Blender keeps both aspects >= 1). Blender's UI limits (lens >= 1 mm,
        |shift| <= 10) are not enforced here."""
        m = np.asarray(world_to_camera, dtype=np.float64)
        if m.shape != (4, 4) or not np.isfinite(m).all():
            raise BlenderCameraError(f"world_to_camera must be a finite 4x4 matrix, got shape {m.shape}")
        for label, v in (("fx", fx), ("fy", fy)):
            if not (math.isfinite(v) and v > 0):
                raise BlenderCameraError(f"{label} must be a positive number, got {v}")
        if int(width) <= 0 or int(height) <= 0:
            raise BlenderCameraError(f"image size must be positive, got {width}x{height}")
        w, h = int(width), int(height)
        ycor = fx / fy  # = pixel_aspect_y / pixel_aspect_x
        aspx, aspy = (1.0, ycor) if ycor >= 1 else (1.0 / ycor, 1.0)
        fit = _resolved_fit("AUTO", w * aspx, h * aspy)
        viewfac = w if fit == "HORIZONTAL" else ycor * h
        camera_to_world = np.linalg.inv(m) @ BLENDER_TO_OPENCV_AXES
        return cls(
            matrix_world=_normalised_rotation(camera_to_world),
            lens_mm=float(fx * sensor_width / viewfac),
            sensor_width=float(sensor_width),
            sensor_height=float(sensor_width) * 2 / 3,  # unused with AUTO; Blender's default ratio
            sensor_fit="AUTO",
            resolution_x=w,
            resolution_y=h,
            resolution_percentage=100,
            shift_x=float((w / 2 - cx) / viewfac),
            shift_y=float((cy - h / 2) * ycor / viewfac),
            pixel_aspect_x=float(aspx),
            pixel_aspect_y=float(aspy),
            name=name,
        )

    def to_dict(self) -> dict:
        """JSON-ready fields (matrix_world as nested lists)."""
        d = asdict(self)
        d["matrix_world"] = np.asarray(self.matrix_world, dtype=np.float64).tolist()
        return d


def blender_to_opencv(*args, **kwargs) -> dict:
    """`BlenderCamera(*args, **kwargs).to_opencv()` (the fields in the same order as positional arguments)."""
    return BlenderCamera(*args, **kwargs).to_opencv()


def opencv_to_blender(
    world_to_camera, fx: float, fy: float, cx: float, cy: float, width: int, height: int,
    sensor_width: float = 36.0,
) -> dict:  # fmt: skip
    """An OpenCV pinhole camera as Blender camera settings, as `bpy` names them: dict(matrix_world (4x4
    nested lists, no scale), lens, sensor_width, sensor_height, sensor_fit, resolution_x, resolution_y,
    resolution_percentage, shift_x, shift_y, pixel_aspect_x, pixel_aspect_y). See
    `BlenderCamera.from_opencv`."""
    d = BlenderCamera.from_opencv(world_to_camera, fx, fy, cx, cy, width, height, sensor_width).to_dict()
    d["lens"] = d.pop("lens_mm")
    d.pop("name")
    return d
