"""Blender add-on, bpy-free: up-axis guess, Stylize's reasons, partial stylization (soft edge, blend)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blender_addon import artist  # noqa: E402
from shared_protocol.splatfile import SplatArrays  # noqa: E402


def splats(n=6, k=4, seed=0):
    rng = np.random.default_rng(seed)
    return SplatArrays(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        quats=np.tile(np.float32([1, 0, 0, 0]), (n, 1)),
        log_scales=np.zeros((n, 3), np.float32),
        opacity_logits=np.zeros(n, np.float32),
        sh=rng.normal(size=(n, k, 3)).astype(np.float32),
    )


def test_up_axis_guess_from_the_file():
    assert artist.detect_up_axis("scene.ply", ["nx", "ny", "nz"]) == "-Y"  # INRIA trainer output
    assert artist.detect_up_axis("donut.ply", []) == "Z"  # Blender-made / this add-on's export
    for name in ("guitar.compressed.ply", "a.splat", "b.spz", "c.sog", "d.glb"):
        assert artist.detect_up_axis(name, []) == "-Y", name


def test_stylize_problem_names_the_reason():
    mesh = SimpleNamespace(name="Cube", type="MESH", data=SimpleNamespace(polygons=[1]))
    empty = SimpleNamespace(name="Empty", type="EMPTY")

    def problem(obj, style="s.png", running=False, exists=True, splat=False):
        return artist.stylize_problem(obj, splat, running, style, lambda p: exists)

    assert problem(mesh) == ""
    assert "is running" in problem(mesh, running=True)
    assert "select a splat object" in problem(None)
    assert "'Empty' is a empty" in problem(empty)
    assert "pick a style image" in problem(mesh, style=" ")
    assert "does not exist" in problem(mesh, exists=False)
    flat = SimpleNamespace(name="Pts", type="MESH", data=SimpleNamespace(polygons=[]))
    assert "no faces" in problem(flat) and problem(flat, splat=True) == ""


def test_blend_keeps_weight_zero_bit_identical_and_interpolates_the_rest():
    original, styled = splats(seed=1), splats(seed=2)
    w = np.array([0, 1, 0.5, 0, 0.25, 1], np.float32)
    out = artist.blend_result(original, styled, w, strength=1.0, strength_done=False)
    assert out.sh[w == 0].tobytes() == original.sh[w == 0].tobytes()
    assert out.sh[w == 1].tobytes() == styled.sh[w == 1].tobytes()
    np.testing.assert_allclose(out.sh[2], 0.5 * original.sh[2] + 0.5 * styled.sh[2], rtol=1e-6)
    np.testing.assert_allclose(out.sh[4], 0.75 * original.sh[4] + 0.25 * styled.sh[4], rtol=1e-6)
    half = artist.blend_result(original, styled, None, strength=0.5, strength_done=False)
    np.testing.assert_allclose(half.sh, (original.sh + styled.sh) / 2, rtol=1e-5, atol=1e-7)
    # the engine applied the strength already: only the mask blends
    assert artist.blend_result(original, styled, None, 0.5, strength_done=True) is styled


def test_soft_edge_falls_off_linearly_with_the_distance_to_the_chosen_splats():
    means = np.array([[0, 0, 0], [0.25, 0, 0], [0.5, 0, 0], [0.9, 0, 0], [3, 3, 3]], np.float64)
    hard = np.array([1, 0, 0, 0, 0], np.float32)
    soft = artist.soft_edge(means, hard, distance=1.0)
    np.testing.assert_allclose(soft, [1, 0.75, 0.5, 0.1, 0], atol=1e-6)
    rng = np.random.default_rng(3)  # against brute force on a random cloud
    pts = rng.uniform(0, 2, size=(400, 3))
    w = (rng.uniform(size=400) < 0.1).astype(np.float32)
    d = np.linalg.norm(pts[:, None] - pts[None, w == 1], axis=2).min(axis=1)
    expected = np.maximum(w, np.clip(1 - d / 0.3, 0, 1))
    np.testing.assert_allclose(artist.soft_edge(pts, w, 0.3), expected, atol=1e-5)
    assert artist.soft_edge(pts, w, 0.0).tobytes() == w.tobytes()


def test_job_settings_carry_the_strength_as_an_override_when_the_protocol_has_them():
    s = SimpleNamespace(preset="fast", steps=0, size=96, seed=3, style_strength=0.4)
    assert artist.job_settings(s, "cpu", 5, strength_on_engine=False) == {
        "preset": "fast", "steps": None, "size": 96, "views": 5, "seed": 3, "device": "cpu"
    }  # fmt: skip
    with_strength = artist.job_settings(s, "cpu", 5, strength_on_engine=True)
    assert with_strength["overrides"] == {"style_strength": pytest.approx(0.4)}
    assert artist.working_size(SimpleNamespace(size=0, preset="preview")) == 112


def test_addon_preset_sizes_match_the_engine_presets():
    from engine.stylize.config import PRESETS

    assert set(artist.PRESET_SIZES) == set(PRESETS)
    assert all(artist.PRESET_SIZES[name] == p["size"] for name, p in PRESETS.items())
