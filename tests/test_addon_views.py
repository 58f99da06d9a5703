"""Blender add-on, bpy-free: orbit views, cameras moved into object space, Blender camera conversion."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blender_addon import views as V  # noqa: E402


def euler_matrix(x, y, z):
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    return rz @ ry @ rx


def test_orbit_views_frame_the_box_look_at_its_centre_and_are_adjacent():
    lo, hi = np.array([1.0, 2.0, 0.0]), np.array([3.0, 3.0, 2.0])
    views = V.orbit_views(lo, hi, count=12, size=64)
    assert len(views) == 12 and all(v["width"] == v["height"] == 64 for v in views)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    centres = []
    for v in views:
        w2c = np.asarray(v["world_to_camera"])
        np.testing.assert_allclose(w2c[:3, :3] @ w2c[:3, :3].T, np.eye(3), atol=1e-9)
        np.testing.assert_allclose(V.project(v, ((lo + hi) / 2)[None])[0], [32, 32], atol=1e-6)
        px = V.project(v, corners)
        assert np.all((px >= 0) & (px <= 64)), px
        # +Z (Blender up) is up in the image: a point above the centre has a smaller row
        assert V.project(v, ((lo + hi) / 2 + [0, 0, 0.1])[None])[0, 1] < 32
        centres.append(-w2c[:3, :3].T @ w2c[:3, 3])
    centres = np.array(centres)
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    jumps = [np.linalg.norm(centres[i] - centres[j]) for i in range(12) for j in range(12) if abs(i - j) > 1]
    assert steps.max() < np.median(jumps)  # each next view is a neighbour (serpentine over two rings)
    assert len(set(np.round(centres[:, 2], 6))) == 2
    with pytest.raises(ValueError, match="at least 1"):
        V.orbit_views(lo, hi, 0, 64)


def test_cameras_moved_into_object_space_see_the_same_image():
    rng = np.random.default_rng(0)
    view = V.orbit_views([-1, -1, -1], [1, 1, 1], 3, 48)[1]
    m = np.eye(4)
    m[:3, :3] = 2.5 * euler_matrix(0.3, -0.7, 1.1)
    m[:3, 3] = [4.0, -2.0, 0.5]
    local_points = rng.normal(size=(20, 3)) * 0.3
    world_points = local_points @ m[:3, :3].T + m[:3, 3]
    world_view = V.orbit_views(world_points.min(0), world_points.max(0), 3, 48)[2]
    local_view = V.to_object_space(world_view, m)
    np.testing.assert_allclose(
        V.project(local_view, local_points), V.project(world_view, world_points), atol=1e-8
    )
    r = np.asarray(local_view["world_to_camera"])[:3, :3]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-9)
    squash = np.diag([1.0, 2.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="not uniform; apply the scale"):
        V.to_object_space(view, squash)
    with pytest.raises(ValueError, match="mirrored"):
        V.to_object_space(view, np.diag([-1.0, 1.0, 1.0, 1.0]))


def test_fit_size_keeps_the_view():
    view = V.camera_dict(np.eye(4), 500, 400, 320, 240, 640, 480)
    small = V.fit_size(view, 160)
    assert (small["width"], small["height"]) == (160, 120)
    p = np.array([[0.1, -0.2, 2.0]])
    np.testing.assert_allclose(V.project(small, p), V.project(view, p) / 4, atol=1e-9)


def test_blender_camera_conversion_uses_the_shared_cameras_module():
    # Blender camera at (0, -5, 0) looking along +y (rotation x = 90 degrees), 50 mm lens, 36 mm sensor
    mw = np.eye(4)
    mw[:3, :3] = euler_matrix(np.pi / 2, 0, 0)
    mw[:3, 3] = [0, -5, 0]
    from blender_addon._shared import shared_module

    cam = shared_module("cameras").BlenderCamera(
        matrix_world=mw, lens_mm=50.0, sensor_width=36.0, sensor_height=24.0, sensor_fit="AUTO",
        resolution_x=200, resolution_y=100, resolution_percentage=100, name="Camera",
    )  # fmt: skip
    view = cam.to_opencv()
    assert view["name"] == "Camera" and (view["width"], view["height"]) == (200, 100)
    # hand computed: a point 1 unit right (+x) at distance 5 lands at 100 + (50 / 36 * 200) * 1 / 5
    np.testing.assert_allclose(V.project(view, np.array([[1.0, 0, 0]]))[0], [100 + 50 / 36 * 200 / 5, 50])
    # +z (up in Blender) goes up in the image
    assert V.project(view, np.array([[0, 0, 1.0]]))[0, 1] < 50
