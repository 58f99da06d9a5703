"""Orbit views around a scene, and ordering cameras so that neighbours follow each other.

    orbit_cameras(scene, n, width, height)      n cameras on one or more rings around the robust bounding box,
                                                in adjacency order (each view's neighbour is the next one)
    adjacency_order(cameras) -> list[int]       a greedy nearest-neighbour path through given cameras
    order_by_adjacency(cameras) -> list[Camera] the same, returning the cameras
    robust_bounds(points)                       per-axis 2nd/98th percentiles: stray splats do not count
    resolve_up(up, cameras)                     the world-up rule (see docs/cameras.md)

World up: an explicit `up` wins ("+z", "-y", or a 3-vector); else the mean image-up of reference cameras
(when the scene came with cameras); else -y, the convention of COLMAP/INRIA-trained 3DGS scenes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .camera import Camera, CameraError

DEFAULT_UP = np.array([0.0, -1.0, 0.0])  # COLMAP / INRIA 3DGS scenes are usually "y down"
_AXES = {"x": 0, "y": 1, "z": 2}


# ---------------------------------------------------------------------------------------------- bounds
def _points_of(scene) -> np.ndarray:  # [N, 3] float64
    """Gaussian centres of a GaussianScene, or a points array/tensor [N, 3]."""
    means = getattr(scene, "means", scene)
    if isinstance(means, torch.Tensor):
        means = means.detach().to("cpu", torch.float64).numpy()
    pts = np.asarray(means, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or pts.shape[0] == 0:
        raise CameraError(f"orbit needs a scene or points of shape [N, 3] with N > 0, got {pts.shape}")
    pts = pts[np.isfinite(pts).all(axis=1)]
    if pts.shape[0] == 0:
        raise CameraError("orbit: every point of the scene is non-finite")
    return pts


def robust_bounds(scene, percentiles: tuple[float, float] = (2.0, 98.0)) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis low/high percentiles of the Gaussian centres ([3], [3]), so a few far splats are ignored."""
    lo, hi = percentiles
    if not 0.0 <= lo < hi <= 100.0:
        raise CameraError(f"percentiles must satisfy 0 <= lo < hi <= 100, got {percentiles}")
    pts = _points_of(scene)
    if pts.shape[0] > 500_000:  # a strided sample is plenty for percentiles
        pts = pts[:: pts.shape[0] // 500_000 + 1]
    return np.percentile(pts, lo, axis=0), np.percentile(pts, hi, axis=0)


# ---------------------------------------------------------------------------------------------- up
def camera_up(camera: Camera) -> np.ndarray:  # [3] the image's up direction (-y of the camera) in world
    return -camera.world_to_camera[1, :3]


def resolve_up(up=None, cameras: Sequence[Camera] | None = None) -> np.ndarray:
    """The world-up unit vector: explicit `up` ("+z", "-y", "y", or [3]), else from `cameras`, else -y."""
    if up is None:
        if cameras:
            mean = np.mean([camera_up(c) for c in cameras], axis=0)
            if np.linalg.norm(mean) > 1e-6:
                return mean / np.linalg.norm(mean)
        return DEFAULT_UP.copy()
    if isinstance(up, str):
        s = up.strip().lower()
        sign = -1.0 if s.startswith("-") else 1.0
        axis = s.lstrip("+-")
        if axis not in _AXES:
            raise CameraError(f"up must be one of +x,-x,+y,-y,+z,-z or a 3-vector, got {up!r}")
        v = np.zeros(3)
        v[_AXES[axis]] = sign
        return v
    v = np.asarray(up, dtype=np.float64).reshape(-1)
    if v.shape != (3,) or not np.isfinite(v).all() or np.linalg.norm(v) < 1e-12:
        raise CameraError(f"up must be a non-zero finite 3-vector, got {up!r}")
    return v / np.linalg.norm(v)


def _horizontal_basis(up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit e1, e2 with (e1, e2, up) right-handed; e1 is the world axis most perpendicular to up."""
    axis = np.eye(3)[int(np.argmin(np.abs(up)))]
    e1 = axis - up * (axis @ up)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    return e1, e2


# ---------------------------------------------------------------------------------------------- orbit
def _ring_sizes(n: int, rings: int) -> list[int]:
    base, extra = divmod(n, rings)
    return [base + (1 if i < extra else 0) for i in range(rings)]


def _fit_distance(
    corners: np.ndarray,  # [8, 3] box corners relative to the centre
    rotations: list[np.ndarray],  # each [3, 3] world-to-camera rotation
    tan_half_x: float,
    tan_half_y: float,
    margin: float,
) -> float:
    """Smallest distance along each view's axis at which every corner is inside the frame (max over views)."""
    best = 0.0
    for r in rotations:
        c = corners @ r.T  # [8, 3] corners in camera axes, relative to the look-at point
        need_x = np.abs(c[:, 0]) * margin / tan_half_x - c[:, 2]
        need_y = np.abs(c[:, 1]) * margin / tan_half_y - c[:, 2]
        need_front = -c[:, 2] * 1.05  # every corner in front of the camera
        best = max(best, float(np.max(np.concatenate([need_x, need_y, need_front]))))
    return best


def orbit_cameras(
    scene,
    n: int,
    width: int,
    height: int,
    elevation_deg: float | Sequence[float] = (20.0,),
    fov_deg: float = 50.0,
    up=None,
    cameras: Sequence[Camera] | None = None,
    percentiles: tuple[float, float] = (2.0, 98.0),
    margin: float = 1.05,
    start_azimuth_deg: float = 0.0,
) -> list[Camera]:
    """`n` cameras looking at the centre of the scene's robust bounding box, in adjacency order.

    scene:          a GaussianScene, or the points [N, 3] (array or tensor)
    elevation_deg:  one value (a single ring) or several (one ring each, n split between them); positive looks
                    down on the scene. Rings are traversed as a serpentine: ring 0 by increasing azimuth,
                    ring 1 back by decreasing azimuth starting above where ring 0 ended, and so on.
    fov_deg:        vertical field of view
    up:             world up ("+z", "-y", [3]); None: from `cameras` when given, else -y (see `resolve_up`)
    cameras:        reference cameras (e.g. the training cameras) used only to estimate `up`
    margin:         1.0 lets the box touch the frame edges; larger leaves a border
    All views share one distance: the smallest at which the whole box is in every frame.
    Names are "orbit_000", "orbit_001", ...
    """
    if n < 1:
        raise CameraError(f"orbit needs n >= 1 views, got {n}")
    if not 0.0 < fov_deg < 179.0:
        raise CameraError(f"fov_deg must be in (0, 179), got {fov_deg}")
    if margin <= 0:
        raise CameraError(f"margin must be positive, got {margin}")
    elevations = [float(elevation_deg)] if np.isscalar(elevation_deg) else [float(e) for e in elevation_deg]
    if not elevations or any(abs(e) >= 89.0 for e in elevations):
        raise CameraError(f"elevations must be given and within (-89, 89) degrees, got {elevation_deg}")
    elevations = elevations[:n]  # never an empty ring

    lo, hi = robust_bounds(scene, percentiles)
    centre = (lo + hi) / 2
    half = np.maximum((hi - lo) / 2, 1e-6 * max(1.0, float(np.abs(centre).max())))
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * half  # [8, 3]
    world_up = resolve_up(up, cameras)
    e1, e2 = _horizontal_basis(world_up)

    # directions from the centre to each eye, in serpentine order
    directions: list[np.ndarray] = []
    azimuth = np.radians(start_azimuth_deg)
    for ring, (el_deg, k) in enumerate(zip(elevations, _ring_sizes(n, len(elevations)), strict=True)):
        step = 2 * np.pi / k * (1 if ring % 2 == 0 else -1)
        el = np.radians(el_deg)
        for i in range(k):
            a = azimuth + i * step
            horiz = np.cos(a) * e1 + np.sin(a) * e2
            directions.append(np.cos(el) * horiz + np.sin(el) * world_up)
        azimuth = azimuth + (k - 1) * step  # the next ring starts at the azimuth where this one ended

    tan_y = np.tan(np.radians(fov_deg) / 2)
    tan_x = tan_y * width / height
    probes = [Camera.look_at(d, np.zeros(3), world_up, fov_deg, width, height) for d in directions]
    distance = _fit_distance(corners, [p.world_to_camera[:3, :3] for p in probes], tan_x, tan_y, margin)
    distance = max(distance, 1e-6)
    return [
        Camera.look_at(centre + distance * d, centre, world_up, fov_deg, width, height, name=f"orbit_{i:03d}")
        for i, d in enumerate(directions)
    ]


# ---------------------------------------------------------------------------------------------- ordering
def _pairwise_cost(cameras: Sequence[Camera], direction_weight: float) -> np.ndarray:  # [n, n]
    pos = np.stack([c.position for c in cameras])  # [n, 3]
    fwd = np.stack([c.forward for c in cameras])  # [n, 3]
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    spread = float(np.linalg.norm(pos - pos.mean(axis=0), axis=1).mean())
    if spread < 1e-12:
        spread = 1.0
    angle = 1.0 - np.clip(fwd @ fwd.T, -1.0, 1.0)  # 0 for the same direction, 2 for opposite
    return dist / spread + direction_weight * angle


def _two_opt(order: list[int], cost: np.ndarray, max_passes: int = 20) -> list[int]:
    """Improve an open path by reversing segments while that shortens it (removes crossings)."""
    path = np.array(order)
    n = len(path)
    for _ in range(max_passes):
        improved = False
        for i in range(n - 2):
            a, b = path[i], path[i + 1]
            c, d = path[i + 2 :], np.append(path[i + 3 :], -1)
            before = cost[a, b] + np.where(d >= 0, cost[c, np.maximum(d, 0)], 0.0)
            after = cost[a, c] + np.where(d >= 0, cost[b, np.maximum(d, 0)], 0.0)
            gain = before - after
            j = int(np.argmax(gain))
            if gain[j] > 1e-12:
                path[i + 1 : i + 3 + j] = path[i + 1 : i + 3 + j][::-1].copy()
                improved = True
        if not improved:
            break
    return [int(k) for k in path]


def adjacency_order(cameras: Sequence[Camera], start: int = 0, direction_weight: float = 1.0) -> list[int]:
    """A visiting order (indices into `cameras`) in which consecutive cameras are neighbours.

    Greedy nearest neighbour from `start` (default: keep the first camera first), then 2-opt to remove
    crossings. The cost between two cameras is the distance of their centres divided by the mean distance
    of all centres from their centroid, plus `direction_weight` x (1 - cos of the angle between their
    viewing directions).
    """
    n = len(cameras)
    if n == 0:
        return []
    if not 0 <= start < n:
        raise CameraError(f"start index {start} is out of range for {n} cameras")
    cost = _pairwise_cost(cameras, direction_weight)
    visited = np.zeros(n, dtype=bool)
    order = [start]
    visited[start] = True
    for _ in range(n - 1):
        row = np.where(visited, np.inf, cost[order[-1]])
        nxt = int(np.argmin(row))
        order.append(nxt)
        visited[nxt] = True
    if n > 3:
        order = _two_opt(order, cost)  # segment reversals start at index 1: `start` stays first
    return order


def order_by_adjacency(cameras: Sequence[Camera], start: int = 0) -> list[Camera]:
    """`cameras` reordered by `adjacency_order`."""
    return [cameras[i] for i in adjacency_order(cameras, start)]


def path_cost(
    cameras: Sequence[Camera], order: Sequence[int] | None = None, direction_weight: float = 1.0
) -> float:
    """Total cost of visiting `cameras` in `order` (default: as given); for checking orderings."""
    if len(cameras) < 2:
        return 0.0
    cost = _pairwise_cost(cameras, direction_weight)
    idx = list(range(len(cameras))) if order is None else list(order)
    return float(sum(cost[a, b] for a, b in zip(idx[:-1], idx[1:], strict=True)))
