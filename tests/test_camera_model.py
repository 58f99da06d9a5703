"""Camera: validation, look_at geometry (OpenCV axes), resizing, dict round trip."""

from __future__ import annotations

import numpy as np
import pytest

from engine.cameras import Camera, CameraError


def project(cam: Camera, p) -> np.ndarray:
    pc = cam.world_to_camera @ np.append(np.asarray(p, float), 1.0)
    return np.array([cam.fx * pc[0] / pc[2] + cam.cx, cam.fy * pc[1] / pc[2] + cam.cy, pc[2]])


def test_look_at_puts_target_at_centre_and_up_at_top():
    cam = Camera.look_at([0, 0, -5], [0, 0, 0], [0, 1, 0], 60.0, 200, 100)
    u, v, z = project(cam, [0, 0, 0])
    assert np.allclose([u, v, z], [100, 50, 5])
    _, v_up, _ = project(cam, [0, 1, 0])
    assert v_up < 50, "world up must appear above the centre (image y points down)"
    # Looking along +z with +y up in a right-handed world, world +x is on the viewer's left.
    assert project(cam, [1, 0, 0])[0] < 100
    assert np.isclose(np.linalg.det(cam.world_to_camera[:3, :3]), 1.0)
    assert np.allclose(cam.position, [0, 0, -5])
    assert np.allclose(cam.forward, [0, 0, 1])
    assert np.isclose(np.degrees(cam.fov_y), 60.0)


def test_resized_keeps_the_view():
    cam = Camera.look_at([1, 2, -5], [0, 0, 0], [0, 1, 0], 50.0, 640, 480)
    small = cam.resized(320)
    assert (small.width, small.height) == (320, 240)
    p = [0.3, -0.2, 0.1]
    assert np.allclose(project(small, p)[:2], project(cam, p)[:2] / 2)
    assert max(cam.fit_to(100).width, cam.fit_to(100).height) == 100


def test_dict_round_trip():
    cam = Camera.look_at([1, 2, -5], [0, 0, 0], [0, 1, 0], 50.0, 64, 48, name="v0")
    back = Camera.from_dict(cam.to_dict())
    assert back == cam and back.name == "v0"


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(world_to_camera=np.eye(3)), "must be 4x4"),
        (dict(world_to_camera=np.diag([2.0, 1, 1, 1])), "orthonormal"),
        (dict(fx=-1.0), "focal lengths must be positive"),
        (dict(width=0), "image size must be positive"),
        (dict(cx=float("nan")), "cx is not finite"),
    ],
)
def test_bad_cameras_are_named(change, message):
    kw = dict(world_to_camera=np.eye(4), fx=10.0, fy=10.0, cx=5.0, cy=5.0, width=10, height=10)
    kw.update(change)
    with pytest.raises(CameraError, match=message):
        Camera(**kw)


def test_from_dict_missing_field():
    with pytest.raises(CameraError, match="missing field 'fx'"):
        Camera.from_dict(
            {"world_to_camera": np.eye(4).tolist(), "fy": 1, "cx": 0, "cy": 0, "width": 1, "height": 1}
        )
