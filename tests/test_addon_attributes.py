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
