"""The views sent to the engine, as camera dicts (`Camera.to_dict` form, OpenCV axes), without bpy.

The splats live in their object's local space; cameras live in Blender's world. The engine works in the
splats' space, so every camera is moved into object-local space: for an object matrix M = [s R | t] (uniform
scale s), local points map to camera coordinates by [R_c R | (R_c t + t_c) / s] up to the factor s, which a
perspective projection ignores, so the images are the same. Non-uniform object scale cannot be expressed
that way: we raise and ask the user to apply the scale.

Automatic views: `orbit_views` places N cameras on a ring (two rings for N >= 8, traversed as a serpentine so
each view's neighbour is the next one) around the object's world-space bounding box, with Blender's +Z up.
"""

from __future__ import annotations

import numpy as np

BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])  # camera axes: Blender (-z forward, y up) -> OpenCV


def look_at(eye, target, up, fov_deg: float, width: int, height: int, name: str = "") -> dict:
    """An OpenCV camera dict at `eye` looking at `target`; image up as close to `up` as possible."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    if np.linalg.norm(z) == 0:
        raise ValueError("look_at: eye and target coincide")
    z /= np.linalg.norm(z)
    x = np.cross(z, up)  # image right
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: the viewing direction is parallel to up")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)  # image down
    rot = np.stack([x, y, z])
    w2c = np.eye(4)
    w2c[:3, :3] = rot
    w2c[:3, 3] = -rot @ eye
    f = 0.5 * max(width, height) / np.tan(np.radians(fov_deg) / 2)
    return camera_dict(w2c, f, f, width / 2, height / 2, width, height, name)


def camera_dict(w2c, fx, fy, cx, cy, width, height, name="") -> dict:
    return {
        "name": name,
        "world_to_camera": np.asarray(w2c, dtype=np.float64).tolist(),
        "fx": float(fx),
        "fy": float(fy),
        "cx": float(cx),
        "cy": float(cy),
        "width": int(width),
        "height": int(height),
    }


def orbit_views(
    bbox_min, bbox_max, count: int, size: int, fov_deg: float = 40.0, elevations_deg=(20.0, -10.0)
) -> list[dict]:
    """`count` square views of `size` px around a world-space box, +Z up, in adjacency order."""
    if count < 1:
        raise ValueError(f"the number of orbit views must be at least 1, got {count}")
    lo, hi = np.asarray(bbox_min, dtype=np.float64), np.asarray(bbox_max, dtype=np.float64)
    centre = (lo + hi) / 2
    radius = max(float(np.linalg.norm(hi - lo)) / 2, 1e-6)
    distance = radius / np.sin(np.radians(fov_deg) / 2) * 1.05  # the bounding sphere fills the frame
    rings = [elevations_deg[0]] if count < 8 else list(elevations_deg)
    per_ring = [count // len(rings) + (1 if i < count % len(rings) else 0) for i in range(len(rings))]
    views = []
    for r, (elevation, n) in enumerate(zip(rings, per_ring, strict=True)):
        azimuths = np.arange(n) * 360.0 / n
        if r % 2 == 1:
            azimuths = azimuths[::-1]  # serpentine: the second ring runs back
        for az in azimuths:
            a, e = np.radians(az), np.radians(elevation)
            eye = centre + distance * np.array([np.cos(e) * np.sin(a), -np.cos(e) * np.cos(a), np.sin(e)])
            views.append(look_at(eye, centre, (0, 0, 1), fov_deg, size, size, f"orbit_{len(views):03d}"))
    return views


def to_object_space(view: dict, matrix_world) -> dict:
    """Move a world-space camera dict into the local space of an object with `matrix_world` (4x4)."""
    m = np.asarray(matrix_world, dtype=np.float64)
    lin = m[:3, :3]
    scales = np.linalg.norm(lin, axis=0)
    if np.any(scales <= 0) or not np.allclose(scales, scales[0], rtol=1e-4):
        raise ValueError(
            f"the object's scale {np.round(scales, 4).tolist()} is not uniform; apply the scale "
            "(Object > Apply > Scale) before stylizing"
        )
    s = float(scales[0])
    rot = lin / s
    if np.linalg.det(rot) < 0:
        raise ValueError("the object is mirrored (negative scale); apply the scale before stylizing")
    w2c = np.asarray(view["world_to_camera"], dtype=np.float64)
    local = np.eye(4)
    local[:3, :3] = w2c[:3, :3] @ rot
    local[:3, 3] = (w2c[:3, :3] @ m[:3, 3] + w2c[:3, 3]) / s
    out = dict(view)
    out["world_to_camera"] = local.tolist()
    return out


def fit_size(view: dict, size: int) -> dict:
    """Scale a camera so that its longer image side is `size` pixels (the engine's working resolution)."""
    w, h = int(view["width"]), int(view["height"])
    s = size / max(w, h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    sx, sy = nw / w, nh / h
    out = dict(view)
    out.update(
        fx=view["fx"] * sx, fy=view["fy"] * sy, cx=view["cx"] * sx, cy=view["cy"] * sy, width=nw, height=nh
    )
    return out


def project(view: dict, points: np.ndarray) -> np.ndarray:
    """Pixel coordinates [N, 2] of world points [N, 3] through a camera dict (for tests and checks)."""
    w2c = np.asarray(view["world_to_camera"], dtype=np.float64)
    p = np.asarray(points, dtype=np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
    return np.stack(
        [view["fx"] * p[:, 0] / p[:, 2] + view["cx"], view["fy"] * p[:, 1] / p[:, 2] + view["cy"]], 1
    )
