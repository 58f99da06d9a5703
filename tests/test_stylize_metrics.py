"""Metrics on known cases, the demo generators, and the stylize / evaluate / demo commands end to end."""

from __future__ import annotations

import argparse
import importlib
import json

import numpy as np
import pytest
import torch
from conftest import make_camera, make_random_scene
from PIL import Image

from engine import metrics
from engine.scene import rgb_to_sh_dc
from engine.scene.io import load_scene, save_scene


def _cams(n: int = 3):
    return [make_camera(40, 40, azimuth_deg=a) for a in np.linspace(0, 90, n)]


def _scene():
    return make_random_scene(100, dtype=torch.float32, seed=7)


def _orange_style() -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.clip(np.array([235, 120, 20]) + rng.normal(0, 8, (32, 32, 3)), 0, 255).astype(np.uint8)


def test_sliced_wasserstein_zero_for_same_points_and_grows_with_shift():
    rng = np.random.default_rng(0)
    a = torch.tensor(rng.normal(size=(500, 3)))
    assert metrics.sliced_wasserstein(a, a) == pytest.approx(0.0, abs=1e-12)
    d1 = metrics.sliced_wasserstein(a, a + torch.tensor([1.0, 0.0, 0.0]))
    d3 = metrics.sliced_wasserstein(a, a + torch.tensor([3.0, 0.0, 0.0]))
    assert d1 == pytest.approx(1 / np.sqrt(3), rel=0.25)  # E[(u.x)^2] = 1/3 for unit directions in 3D
    assert d3 == pytest.approx(3 * d1, rel=1e-6)
    assert metrics.sliced_wasserstein(a, a.flip(0)) == pytest.approx(0.0, abs=1e-12)  # order-free


def test_identical_scenes_give_ssim_one_and_ratio_one():
    scene = _scene()
    m = metrics.evaluate_scenes(scene, scene.clone(), _orange_style(), cameras=_cams(), with_models=False)
    assert m["ssim_luminance"] == pytest.approx(1.0, abs=1e-9)
    assert m["style_distance_ratio"] == pytest.approx(1.0, abs=1e-12)
    assert m["geometry_identical"] is True
    assert m["consistency_short_original"] == pytest.approx(m["consistency_short_stylized"], abs=0)
    assert m["consistency_short_pairs"] == 3 and m["consistency_short_coverage"] > 0  # a fuzzy cloud: few
    assert "notes" not in m  # nothing was skipped: the model-based scores were not asked for


def test_recolouring_toward_the_style_moves_the_distance():
    scene = _scene()
    style = _orange_style()
    orange = torch.tensor([235, 120, 20], dtype=torch.float32) / 255
    sh = scene.sh.clone()
    sh[:, 0] = rgb_to_sh_dc(orange).expand(sh.shape[0], 3)
    recoloured = scene.replace(sh=sh)
    m = metrics.evaluate_scenes(scene, recoloured, style, cameras=_cams(), with_models=False)
    assert m["style_distance_ratio"] < 0.5
    assert m["ssim_luminance"] < 0.99  # the luminance pattern changed too
    inverted = scene.replace(sh=-scene.sh)
    m2 = metrics.evaluate_scenes(scene, inverted, style, cameras=_cams(), with_models=False)
    assert m2["ssim_luminance"] < m["ssim_luminance"] + 0.5 and m2["ssim_luminance"] < 1.0


def test_consistency_sees_view_inconsistent_colours():
    scene = _scene()
    cams = _cams()
    im, al, de = metrics.render_views(scene, cams)
    g = torch.Generator().manual_seed(0)
    noisy = [i + torch.rand(i.shape, generator=g) * 0.5 for i in im]
    out = metrics.consistency_errors({"clean": im, "noisy": noisy}, de, al, cams)
    # independent noise u1 - u2, u ~ U(0, 0.5): E|u1 - u2| = 0.5 / 3 added on top of the scene's own error
    assert out["consistency_short_noisy"] > out["consistency_short_clean"] + 0.12


def test_final_metrics_on_views_of_different_sizes():
    scene = _scene()
    scene = scene.replace(opacity_logits=torch.full_like(scene.opacity_logits, 4.0))  # opaque: surfaces
    cams = [make_camera(40, 40, azimuth_deg=0), make_camera(56, 48, azimuth_deg=30)]
    im, al, de = metrics.render_views(scene, cams)
    cfg = metrics.MetricsConfig(style_score=False, model_scores=False)
    m = metrics.final_metrics(im, [i.clone() for i in im], al, de, cams, _orange_style(), cfg)
    assert m["ssim_luminance"] == pytest.approx(1.0, abs=1e-9) and m["style_distance_ratio"] == 1.0
    assert m["consistency_short_original"] == m["consistency_short_stylized"] < 0.2
    assert m["consistency_short_pairs"] == 2 and m["consistency_short_coverage"] > 0.1
    # the pooled colour distance is the distance of all object pixels together (written here)
    px = torch.cat([metrics.object_pixels_lab(i[None], a[None, None]) for i, a in zip(im, al, strict=True)])
    ref = metrics.sliced_wasserstein(px, metrics.style_pixels_lab(_orange_style()))
    assert m["style_distance_original"] == pytest.approx(ref, rel=1e-12)
    no_depth = metrics.final_metrics(im, im, al, None, cams, _orange_style(), cfg)
    assert "consistency_short_original" not in no_depth and "no depths" in no_depth["notes"][0]
    with pytest.raises(ValueError, match="one original, stylized image and mask per camera"):
        metrics.final_metrics(im, im[:1], al, de, cams, _orange_style(), cfg)


def test_demo_scene_and_style_are_deterministic():
    from engine.demo import demo_scene, demo_style_image

    a, b = demo_scene(n_torus=500, n_sphere=100), demo_scene(n_torus=500, n_sphere=100)
    assert a.num_gaussians == 600 and torch.equal(a.sh, b.sh) and torch.equal(a.means, b.means)
    s1, s2 = demo_style_image(96, 64), demo_style_image(96, 64)
    assert s1.shape == (64, 96, 3) and s1.dtype == np.uint8 and np.array_equal(s1, s2)
    assert s1.reshape(-1, 3).std(axis=0).min() > 20  # a strong palette, not a flat image


def _run_cli(name: str, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="splatbrush")
    sub = parser.add_subparsers(dest="command")
    importlib.import_module(f"engine.cli.{name}").add_parser(sub)
    args = parser.parse_args([name, *argv])
    return args.func(args)


def test_stylize_and_evaluate_commands_end_to_end(tmp_path, capsys):
    scene = _scene()
    save_scene(scene, tmp_path / "in.ply")
    Image.fromarray(_orange_style()).save(tmp_path / "style.png")
    cams = tmp_path / "cams.json"
    cams.write_text(json.dumps([c.to_dict() for c in _cams()]))
    out = tmp_path / "out" / "styled.ply"
    argv = [str(tmp_path / "in.ply"), "--style", str(tmp_path / "style.png"), "-o", str(out)]
    rc = _run_cli("stylize", [*argv, "--cameras", str(cams), "--steps", "4", "--size", "32", "--quiet"])
    assert rc == 0
    for suffix in (".ply", ".contact.png", ".losses.png", ".report.json"):
        assert (out.parent / f"styled{suffix}").is_file(), suffix
    styled = load_scene(out)
    assert styled.geometry_equal(load_scene(tmp_path / "in.ply"))
    report = json.loads((out.parent / "styled.report.json").read_text())
    assert report["steps_done"] == 4 and len(report["history"]) == 4
    for stage in ("load", "prepare_views", "final_metrics", "write_outputs", "write_outputs:scene", "total"):
        assert report["timings"][stage]["total_s"] >= 0, stage  # every stage of the job is timed
    rc = _run_cli(
        "evaluate",
        [
            str(tmp_path / "in.ply"),
            str(out),
            "--style",
            str(tmp_path / "style.png"),
            "--views",
            "2",
            "--size",
            "32",
            "-o",
            str(tmp_path / "eval.json"),
        ],
    )
    assert rc == 0
    ev = json.loads((tmp_path / "eval.json").read_text())
    assert ev["geometry_identical"] is True and ev["style_distance_ratio"] < 1.0
    assert "consistency_short_stylized" in ev and "consistency_long_stylized" in ev
    notes = " ".join(ev.get("notes", []))
    for score, what in (("style_score_stylized", "learned style"), ("clip_", "CLIP"), ("csd_", "CSD")):
        # each network-based score is either there or skipped with a note saying so
        assert any(k.startswith(score) for k in ev) != (f"{what} score" in notes), (score, notes)
    assert f"note: {ev['notes'][0]}" in capsys.readouterr().out if notes else True
    spz = tmp_path / "out" / "styled.spz"  # any writable format of the registry
    assert _run_cli("stylize", [*argv[:3], "-o", str(spz), "--steps", "2", "--size", "32", "--quiet"]) == 0
    assert load_scene(spz).num_gaussians == scene.num_gaussians
    with pytest.raises(ValueError, match="styled.xyz"):
        _run_cli("stylize", [*argv[:3], "-o", str(tmp_path / "styled.xyz")])
    with pytest.raises(ValueError, match="not found: .*nope.png"):
        _run_cli("stylize", [str(tmp_path / "in.ply"), "--style", str(tmp_path / "nope.png"), "-o", str(out)])


def test_demo_command_runs(tmp_path):
    rc = _run_cli(
        "demo",
        [
            "-o",
            str(tmp_path),
            "--steps",
            "3",
            "--size",
            "32",
            "--views",
            "2",
            "--gaussians",
            "400",
            "--quiet",
        ],
    )
    assert rc == 0
    for name in ("scene.ply", "style.png", "stylized.ply", "stylized.contact.png", "stylized.report.json"):
        assert (tmp_path / name).is_file(), name
