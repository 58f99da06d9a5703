"""Blender add-on, bpy-free: the attributes of Blender 5.3's native Gaussian splats and reading them back
(the bpy side is tested in real Blender 5.3 by tests/blender/test_blender_native.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the add-on package lives at the repo root

from blender_addon import attributes as A  # noqa: E402
from blender_addon import native_splats as N  # noqa: E402
from shared_protocol.splatfile import SplatArrays  # noqa: E402


def random_arrays(n=40, degree=2, seed=0):
    rng = np.random.default_rng(seed)
    return SplatArrays(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        log_scales=rng.normal(-3, 1, size=(n, 3)).astype(np.float32),
        opacity_logits=rng.normal(0, 2, size=n).astype(np.float32),
        sh=rng.normal(size=(n, (degree + 1) ** 2, 3)).astype(np.float32),
        extra={"nx": rng.normal(size=n).astype(np.float32)},
    )


def _native_only(arrays) -> dict[str, np.ndarray]:
    return {name: values for name, (_, values) in N.native_attributes(arrays).items()}


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_native_attributes_names_types_and_values(degree):
    a = random_arrays(degree=degree)
    attrs = N.native_attributes(a)
    expected = {"scale", "rotation", "radiance:base"} | {
        f"radiance:sh_{k}" for k in range((degree + 1) ** 2 - 1)
    }
    assert set(attrs) == expected
    assert attrs["rotation"][0] == "QUATERNION" and attrs["radiance:base"][0] == "FLOAT4"
    assert all(
        attrs[name][0] == "FLOAT_VECTOR" for name in expected if name.startswith(("scale", "radiance:sh"))
    )
    np.testing.assert_allclose(attrs["scale"][1], np.exp(a.log_scales), rtol=1e-6)
    q = attrs["rotation"][1]
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-6)
    assert np.all(np.sum(q * a.quats, axis=1) > 0)  # same rotation, same sign, w first
    base = attrs["radiance:base"][1]
    assert np.array_equal(base[:, :3], a.sh[:, 0])
    np.testing.assert_allclose(base[:, 3], 1 / (1 + np.exp(-a.opacity_logits.astype(np.float64))), atol=1e-7)
    for k in range((degree + 1) ** 2 - 1):
        assert np.array_equal(attrs[f"radiance:sh_{k}"][1], a.sh[:, k + 1])


def test_zero_quaternion_becomes_identity():
    a = random_arrays()
    a.quats[3] = 0
    assert np.array_equal(N.native_attributes(a)["rotation"][1][3], [1, 0, 0, 0])


def test_raw_attributes_read_back_bit_exact():
    a = random_arrays(degree=3)
    means, raw = A.pack(a)
    back = N.arrays_from_native(means, {**raw, **_native_only(a)}, ["nx"])
    for field in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert getattr(back, field).tobytes() == getattr(a, field).tobytes(), field
    assert back.extra["nx"].tobytes() == a.extra["nx"].tobytes()


@pytest.mark.parametrize("degree", [0, 2, 3])
def test_native_only_attributes_read_back_close(degree):
    """As a point cloud from Blender's own importers: scale -> log, opacity -> logit, rotation as stored."""
    a = random_arrays(degree=degree)
    back = N.arrays_from_native(a.means, _native_only(a))
    assert back.sh_degree == degree and not back.extra
    np.testing.assert_allclose(back.log_scales, a.log_scales, atol=1e-5)
    np.testing.assert_allclose(back.opacity_logits, a.opacity_logits, atol=1e-4)
    assert np.array_equal(back.sh, a.sh)
    q = a.quats / np.linalg.norm(a.quats, axis=1, keepdims=True)
    np.testing.assert_allclose(back.quats, q, atol=1e-6)


def test_missing_native_attributes_are_named():
    a = random_arrays()
    values = _native_only(a)
    del values["rotation"]
    with pytest.raises(ValueError, match="rotation"):
        N.arrays_from_native(a.means, values)
    values = _native_only(a)
    del values["radiance:sh_7"]  # 7 of 8 degree-2 coefficients
    with pytest.raises(ValueError, match="found 7 radiance:sh_"):
        N.arrays_from_native(a.means, values)


def _cov(quats, scales):
    q = np.asarray(quats, np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    r = np.stack(
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
         2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
         2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=1,
    ).reshape(-1, 3, 3)  # fmt: skip
    return r @ (np.asarray(scales, np.float64)[:, :, None] ** 2 * np.transpose(r, (0, 2, 1)))


def test_blur_toward_a_camera_adds_the_renderers_blur_to_the_projected_covariance():
    """On the optical axis the projection is J = diag(f/z, f/z): the projected covariance of the baked
    Gaussian must be the original's plus blur_px px^2 on the diagonal; a vanishing blur changes nothing."""
    a = random_arrays(n=64, degree=0, seed=3)
    a.means[:] = 0
    a.means[:, 2] = np.linspace(2, 9, 64)  # on the axis, at several depths
    f = 400.0
    view = {"world_to_camera": np.eye(4).tolist(), "fx": f, "fy": f}
    baked = N.blurred_native(a, view, blur_px=0.3)
    z = a.means[:, 2].astype(np.float64)
    j = (f / z)[:, None, None]
    before = (j**2 * _cov(a.quats, np.exp(a.log_scales)))[:, :2, :2]
    after = (j**2 * _cov(baked["rotation"], baked["scale"]))[:, :2, :2]
    np.testing.assert_allclose(
        after - before, 0.3 * np.eye(2)[None].repeat(64, 0), atol=1e-4 * (1 + before.max())
    )
    none = N.blurred_native(a, view, blur_px=0.0)
    ref = _cov(a.quats, np.exp(a.log_scales))
    np.testing.assert_allclose(_cov(none["rotation"], none["scale"]), ref, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(baked["rotation"], axis=1), 1.0, atol=1e-6)


def test_raw_view_colours_decode_to_the_renderers_colours():
    """Blender decodes 0.5 + C0 * dc from sRGB to linear before blending; with view transform Raw the
    decoded value must be the renderer's own (display) colour, so that blending matches 3DGS."""
    a = random_arrays(n=500, degree=1, seed=5)
    base = N.raw_view_base(a).astype(np.float64)
    shown = 0.5 + N.SH_C0 * base[:, :3]
    decoded = np.where(shown <= 0.04045, shown / 12.92, ((shown + 0.055) / 1.055) ** 2.4)
    expected = np.clip(0.5 + N.SH_C0 * a.sh[:, 0].astype(np.float64), 0, 1)
    np.testing.assert_allclose(decoded, expected, atol=1e-5)
    assert np.abs(decoded - (0.5 + N.SH_C0 * a.sh[:, 0])).max() > 0.05  # clamped where it leaves 0..1
    np.testing.assert_allclose(base[:, 3], N.native_attributes(a)["radiance:base"][1][:, 3], atol=1e-6)
