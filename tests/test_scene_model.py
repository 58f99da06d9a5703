"""GaussianScene: validation names the bad field; helpers keep geometry and convert colours correctly."""

from __future__ import annotations

import pytest
import torch
from conftest import make_random_scene

from engine.scene import GaussianScene, SceneValidationError, rgb_to_sh_dc, sh_dc_to_rgb


def _fields(n=5, k=1):
    return dict(
        means=torch.zeros(n, 3),
        quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        log_scales=torch.zeros(n, 3),
        opacity_logits=torch.zeros(n),
        sh=torch.zeros(n, k, 3),
    )


@pytest.mark.parametrize("k,deg", [(1, 0), (4, 1), (9, 2), (16, 3)])
def test_sh_degree_from_coefficient_count(k, deg):
    assert GaussianScene(**_fields(k=k)).sh_degree == deg


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("means", torch.zeros(5, 2), "means has shape"),
        ("quats", torch.zeros(4, 4), "quats has shape"),
        ("opacity_logits", torch.zeros(5, 1), "opacity_logits has shape"),
        ("sh", torch.zeros(5, 5, 3), "5 SH coefficients"),
        ("sh", torch.zeros(5, 1, 4), "sh has shape"),
        ("log_scales", torch.zeros(5, 3, dtype=torch.int64), "floating-point"),
    ],
)
def test_bad_shapes_are_named(field, value, message):
    kw = _fields()
    kw[field] = value
    with pytest.raises(SceneValidationError, match=message):
        GaussianScene(**kw)


def test_non_finite_values_are_counted():
    kw = _fields()
    kw["means"][1, 0] = float("nan")
    kw["means"][3, 2] = float("inf")
    with pytest.raises(SceneValidationError, match="means has non-finite values .* in 2 Gaussians"):
        GaussianScene(**kw)


def test_empty_scene_and_zero_quaternion_rejected():
    with pytest.raises(SceneValidationError, match="no Gaussians"):
        GaussianScene(**_fields(n=0))
    kw = _fields()
    kw["quats"][2] = 0
    with pytest.raises(SceneValidationError, match="all-zero quaternions"):
        GaussianScene(**kw)


def test_colour_conversion_round_trip():
    rgb = torch.rand(10, 3)
    assert torch.allclose(sh_dc_to_rgb(rgb_to_sh_dc(rgb)), rgb, atol=1e-6)
    s = GaussianScene.from_activated(
        torch.zeros(10, 3), torch.randn(10, 4), torch.full((10, 3), 0.1), torch.full((10,), 0.7), rgb
    )
    assert torch.allclose(s.base_colors, rgb, atol=1e-6)
    assert torch.allclose(s.opacities, torch.full((10,), 0.7), atol=1e-6)
    assert torch.allclose(s.scales, torch.full((10, 3), 0.1), atol=1e-6)


def test_replace_keeps_geometry_bits_and_detects_changes():
    s = make_random_scene(20, sh_degree=1, dtype=torch.float32)
    styled = s.replace(sh=s.sh + 1.0)
    assert styled.geometry_equal(s)
    assert not torch.equal(styled.sh, s.sh)
    moved = s.replace(means=s.means.clone())
    moved.means[0, 0] = torch.nextafter(moved.means[0, 0], torch.tensor(10.0))
    assert not moved.geometry_equal(s)
    s0 = s.replace(opacity_logits=s.opacity_logits.clone())
    s0.opacity_logits[0] = 0.0
    s1 = s.replace(opacity_logits=s0.opacity_logits.clone())
    s1.opacity_logits[0] = -0.0
    assert not s0.geometry_equal(s1), "-0.0 and 0.0 differ in bits"


def test_with_sh_degree_pads_and_truncates():
    s = make_random_scene(8, sh_degree=1)
    up = s.with_sh_degree(3)
    assert up.sh.shape == (8, 16, 3)
    assert torch.equal(up.sh[:, :4], s.sh) and torch.count_nonzero(up.sh[:, 4:]) == 0
    assert torch.equal(up.with_sh_degree(0).sh, s.sh[:, :1])


def test_robust_bounds_ignore_outliers():
    s = make_random_scene(1000, spread=1.0)
    means = s.means.clone()
    means[:5] = 1e4
    lo, hi = s.replace(means=means).bounds(2, 98)
    assert (hi < 1.5).all() and (lo > -1.5).all()
