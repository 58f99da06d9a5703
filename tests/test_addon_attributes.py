"""Blender add-on, bpy-free: Gaussian <-> point attribute packing and the display attributes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the add-on package lives at the repo root

from blender_addon import attributes as A  # noqa: E402
from shared_protocol.splatfile import SplatArrays  # noqa: E402


def random_arrays(n=50, degree=2, seed=0, extras=("nx", "filter_3D", "a")):
    rng = np.random.default_rng(seed)
    k = (degree + 1) ** 2
    return SplatArrays(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        log_scales=rng.normal(-3, 1, size=(n, 3)).astype(np.float32),
        opacity_logits=rng.normal(size=n).astype(np.float32),
        sh=rng.normal(size=(n, k, 3)).astype(np.float32),
        extra={name: rng.normal(size=n).astype(np.float32) for name in extras},
    )


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_pack_unpack_is_bit_exact(degree):
    arrays = random_arrays(degree=degree, seed=degree)
    means, attrs = A.pack(arrays)
    assert list(attrs)[: 3 + 3 * ((degree + 1) ** 2 - 1) + 8] == A.gaussian_attribute_names(degree)
    assert all(v.dtype == np.float32 and v.flags.c_contiguous and v.shape == (50,) for v in attrs.values())
    back = A.unpack(means, attrs, extra_order=list(arrays.extra))
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert getattr(back, name).tobytes() == getattr(arrays, name).tobytes(), name
    assert list(back.extra) == ["nx", "filter_3D", "a"]  # the file's order, not sorted
    assert all(back.extra[k].tobytes() == arrays.extra[k].tobytes() for k in arrays.extra)


def test_f_rest_is_channel_major_like_inria():
    arrays = random_arrays(degree=1, extras=())
    _, attrs = A.pack(arrays)
    # INRIA: f_rest_0..2 are the red channel's 3 coefficients, f_rest_3..5 green, f_rest_6..8 blue
    assert np.array_equal(attrs["f_rest_4"], arrays.sh[:, 2, 1])
    assert np.array_equal(attrs["f_rest_6"], arrays.sh[:, 1, 2])


def test_unpack_names_missing_attributes():
    means, attrs = A.pack(random_arrays(degree=0, extras=()))
    del attrs["rot_2"], attrs["opacity"]
    with pytest.raises(ValueError, match="opacity, rot_2"):
        A.unpack(means, attrs)
    with pytest.raises(ValueError, match="found 5 f_rest"):
        A.sh_degree_from_names([f"f_rest_{i}" for i in range(5)])


def euler_to_matrix(e):
    x, y, z = e
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    return rz @ ry @ rx


def quat_to_matrix(q):
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def test_euler_of_quaternion_matches_blender_xyz_convention():
    rng = np.random.default_rng(3)
    quats = rng.normal(size=(200, 4)) * rng.uniform(
        0.1, 5, size=(200, 1)
    )  # unnormalised, as files store them
    quats[0] = [np.cos(np.pi / 4), 0, np.sin(np.pi / 4), 0]  # gimbal lock: 90 degrees about y
    eulers = A.quat_to_euler_xyz(quats)
    for q, e in zip(quats, eulers, strict=True):
        np.testing.assert_allclose(euler_to_matrix(e), quat_to_matrix(q), atol=1e-6)


def test_display_attributes_follow_colour_opacity_and_scale():
    arrays = random_arrays(n=4, degree=0, extras=())
    arrays.sh[:, 0, :] = (np.array([[1.0, 0.5, 0.0]]) - 0.5) / A.SH_C0  # sRGB (1, 0.5, 0)
    arrays.opacity_logits[:] = [0.0, 2.0, -2.0, 10.0]
    shown = A.display_attributes(arrays)
    np.testing.assert_allclose(shown["sb_color"][0], [1.0, 0.21404, 0.0], atol=1e-4)  # linear
    np.testing.assert_allclose(shown["sb_alpha"], 1 / (1 + np.exp(-arrays.opacity_logits)), rtol=1e-6)
    np.testing.assert_allclose(shown["sb_scale"], np.exp(arrays.log_scales), rtol=1e-6)
    c = np.linspace(0, 1, 11)
    np.testing.assert_allclose(A.linear_to_srgb(A.srgb_to_linear(c)), c, atol=1e-9)


def test_colours_changed_counts_gaussians():
    a = random_arrays(n=10, degree=0, extras=())
    b = random_arrays(n=10, degree=0, extras=())
    b.sh = a.sh.copy()
    b.sh[:3, 0, 1] += 0.5
    assert A.colours_changed(a, b) == pytest.approx(0.3)


# ------------------------------------------------------------------ camera-baked display (cards, SH colour)
def look_at(position, target, width=200, height=150, focal=180.0):
    """An engine camera dict (OpenCV: x right, y down, z forward) at `position` looking at `target`."""
    position, target = np.asarray(position, float), np.asarray(target, float)
    forward = (target - position) / np.linalg.norm(target - position)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    w2c = np.eye(4)
    w2c[:3, :3] = np.stack([right, down, forward])
    w2c[:3, 3] = -w2c[:3, :3] @ position
    return {"world_to_camera": w2c.tolist(), "fx": focal, "fy": focal, "cx": width / 2 + 7.0,
            "cy": height / 2 - 5.0, "width": width, "height": height}  # fmt: skip


def pixel(view, point):
    w2c = np.asarray(view["world_to_camera"])
    x, y, z = w2c[:3, :3] @ point + w2c[:3, 3]
    return np.array([view["fx"] * x / z + view["cx"], view["fy"] * y / z + view["cy"]])


def test_cards_draw_the_projected_covariance_plus_the_screen_blur():
    """The card's footprint on screen equals the 3D covariance pushed through the camera (Jacobian by
    finite differences here) plus 0.3 px^2, and it faces the camera at the splat's own depth."""
    arrays = random_arrays(n=20, degree=0, extras=())
    arrays.means = (arrays.means * 0.3).astype(np.float32)  # in view, not too far off the axis
    arrays.log_scales = np.log(np.random.default_rng(5).uniform(0.005, 0.08, size=(20, 3))).astype(np.float32)
    view = look_at([0.4, -3.0, 1.2], [0.0, 0.0, 0.0])
    cards = A.card_attributes(arrays, view)
    w2c = np.asarray(view["world_to_camera"])
    for i in range(20):
        mean = arrays.means[i].astype(float)
        jac = np.stack([(pixel(view, mean + h) - pixel(view, mean - h)) / 2e-6 for h in np.eye(3) * 1e-6], 1)
        m = quat_to_matrix(arrays.quats[i]) * np.exp(arrays.log_scales[i].astype(float))
        expected = jac @ m @ m.T @ jac.T + 0.3 * np.eye(2)
        rot = euler_to_matrix(cards["sb_card_rotation"][i])
        std = cards["sb_card_scale"][i].astype(float)
        axes = [mean + rot[:, k] * std[k] for k in range(2)]  # one std dev along each card axis, in 3D
        offsets = np.stack([pixel(view, a) - pixel(view, mean) for a in axes], 1)  # [2 px, 2 axes]
        np.testing.assert_allclose(offsets @ offsets.T, expected, rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(rot[:, 2], -w2c[2, :3], atol=1e-5)  # normal toward the camera
        assert std[0] >= std[1] > 0


def test_cards_behind_the_camera_are_not_drawn():
    arrays = random_arrays(n=2, degree=0, extras=())
    arrays.means = np.array([[0, 0, 0], [0, -5, 0]], np.float32)  # the second one behind the camera
    cards = A.card_attributes(arrays, look_at([0, -3, 0], [0, 0, 0]))
    assert cards["sb_card_scale"][0].min() > 1e-4 and cards["sb_card_scale"][1].max() < 1e-8


def test_view_colour_evaluates_degree_one_toward_the_camera():
    arrays = random_arrays(n=6, degree=1, extras=())
    camera = np.array([0.5, -4.0, 2.0])
    d = arrays.means - camera
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    c1 = 0.4886025119029199
    sh = arrays.sh
    expected = 0.5 + A.SH_C0 * sh[:, 0] - c1 * d[:, 1:2] * sh[:, 1] + c1 * d[:, 2:3] * sh[:, 2]
    expected = np.maximum(expected - c1 * d[:, 0:1] * sh[:, 3], 0.0)
    np.testing.assert_allclose(A.view_colours(arrays, camera), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(A.view_colours(arrays), np.maximum(0.5 + A.SH_C0 * sh[:, 0], 0), atol=1e-6)
    shown = A.display_attributes(arrays, look_at(camera, [0, 0, 0]))
    np.testing.assert_allclose(shown["sb_color"], A.srgb_to_linear(expected), atol=1e-5)
    assert {"sb_card_rotation", "sb_card_scale"} <= set(shown)


def test_bad_views_are_refused_naming_the_value():
    arrays = random_arrays(n=2, degree=0, extras=())
    view = look_at([0, -3, 0], [0, 0, 0])
    with pytest.raises(ValueError, match="fx=-1.0"):
        A.card_attributes(arrays, {**view, "fx": -1.0})
    with pytest.raises(ValueError, match="lacks world_to_camera"):
        A.card_attributes(arrays, {k: v for k, v in view.items() if k != "world_to_camera"})


def test_extent_is_where_the_splat_alpha_falls_to_1_over_255():
    arrays = random_arrays(n=5, degree=0, extras=())
    arrays.opacity_logits = np.array([-8.0, -3.0, 0.0, 2.0, 9.0], np.float32)
    shown = A.display_attributes(arrays)
    opacity = shown["sb_alpha"].astype(float)
    extent = shown["sb_extent"].astype(float)
    faint = opacity < 1 / 255  # never drawn: no extent
    assert faint[0] and extent[0] == 0.0
    np.testing.assert_allclose(opacity[~faint] * np.exp(-0.5 * extent[~faint] ** 2), 1 / 255, rtol=1e-5)
    np.testing.assert_allclose(
        shown["sb_color_display"], np.clip(0.5 + A.SH_C0 * arrays.sh[:, 0], 0, 1), atol=1e-6
    )
