"""`Camera`: one pinhole camera in the OpenCV convention (x right, y down, z forward).

    world_to_camera  [4, 4] float64   maps world points to camera coordinates
    fx, fy, cx, cy   pixels           intrinsics; pixel centres are at integer + 0.5
    width, height    pixels

The renderer projects a camera point (x, y, z) to pixel (fx * x / z + cx, fy * y / z + cy), matching gsplat.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class CameraError(ValueError):
    """A camera (or a camera file) is malformed; the message names what is wrong."""


@dataclass(eq=False)
class Camera:
    world_to_camera: np.ndarray  # [4, 4] float64
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        m = np.asarray(self.world_to_camera, dtype=np.float64)
        if m.shape != (4, 4):
            raise CameraError(f"world_to_camera must be 4x4, got shape {m.shape}")
        if not np.isfinite(m).all():
            raise CameraError("world_to_camera has non-finite values")
        if not np.allclose(m[3], [0, 0, 0, 1]):
            raise CameraError(f"world_to_camera's last row must be [0, 0, 0, 1], got {m[3].tolist()}")
        r = m[:3, :3]
        if not np.allclose(r @ r.T, np.eye(3), atol=1e-4):
            raise CameraError("world_to_camera's rotation part is not orthonormal")
        self.world_to_camera = m
        for name in ("fx", "fy", "cx", "cy"):
            v = float(getattr(self, name))
            if not np.isfinite(v):
                raise CameraError(f"{name} is not finite: {v}")
            setattr(self, name, v)
        if self.fx <= 0 or self.fy <= 0:
            raise CameraError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        self.width, self.height = int(self.width), int(self.height)
        if self.width <= 0 or self.height <= 0:
            raise CameraError(f"image size must be positive, got {self.width}x{self.height}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Camera):
            return NotImplemented
        return bool(np.array_equal(self.world_to_camera, other.world_to_camera)) and (
            (self.fx, self.fy, self.cx, self.cy, self.width, self.height)
            == (other.fx, other.fy, other.cx, other.cy, other.width, other.height)
        )

    # ------------------------------------------------------------------ derived
    @property
    def K(self) -> np.ndarray:  # [3, 3]
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    @property
    def camera_to_world(self) -> np.ndarray:  # [4, 4]
        return np.linalg.inv(self.world_to_camera)

    @property
    def position(self) -> np.ndarray:  # [3] camera centre in world space
        r, t = self.world_to_camera[:3, :3], self.world_to_camera[:3, 3]
        return -r.T @ t

    @property
    def forward(self) -> np.ndarray:  # [3] viewing direction (+z of the camera) in world space
        return self.world_to_camera[2, :3].copy()

    @property
    def fov_x(self) -> float:
        return float(2 * np.arctan(self.width / (2 * self.fx)))

    @property
    def fov_y(self) -> float:
        return float(2 * np.arctan(self.height / (2 * self.fy)))

    # ------------------------------------------------------------------ edits
    def resized(self, width: int, height: int | None = None) -> Camera:
        """Same view at another resolution. With only `width`, the aspect ratio is kept."""
        if height is None:
            height = max(1, round(self.height * width / self.width))
        sx, sy = width / self.width, height / self.height
        return Camera(
            self.world_to_camera.copy(),
            self.fx * sx,
            self.fy * sy,
            self.cx * sx,
            self.cy * sy,
            width,
            height,
            self.name,
        )

    def fit_to(self, size: int) -> Camera:
        """Scale so that the longer side is `size` pixels."""
        s = size / max(self.width, self.height)
        return self.resized(max(1, round(self.width * s)), max(1, round(self.height * s)))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def look_at(
        cls,
        eye: np.ndarray,  # [3]
        target: np.ndarray,  # [3]
        up: np.ndarray,  # [3] world up
        fov_y_deg: float,
        width: int,
        height: int,
        name: str = "",
    ) -> Camera:
        """A camera at `eye` looking at `target`, its image up as close to `up` as possible."""
        eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
        z = target - eye
        if np.linalg.norm(z) == 0:
            raise CameraError("look_at: eye and target coincide")
        z /= np.linalg.norm(z)
        x = np.cross(-up, z)  # x = y cross z for a right-handed frame whose image y (down) is about -up
        if np.linalg.norm(x) < 1e-9:
            raise CameraError("look_at: viewing direction is parallel to up")
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        r = np.stack([x, y, z])  # rows: camera axes in world coordinates
        m = np.eye(4)
        m[:3, :3] = r
        m[:3, 3] = -r @ eye
        f = 0.5 * height / np.tan(np.radians(fov_y_deg) / 2)
        return cls(m, f, f, width / 2, height / 2, width, height, name)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "world_to_camera": self.world_to_camera.tolist(),
            "fx": self.fx,
            "fy": self.fy,
            "cx": self.cx,
            "cy": self.cy,
            "width": self.width,
            "height": self.height,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Camera:
        try:
            return cls(
                np.asarray(d["world_to_camera"], dtype=np.float64),
                d["fx"],
                d["fy"],
                d["cx"],
                d["cy"],
                d["width"],
                d["height"],
                str(d.get("name", "")),
            )
        except KeyError as e:
            raise CameraError(f"camera is missing field {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            if isinstance(e, CameraError):
                raise
            raise CameraError(f"camera has a malformed field: {e}") from None
