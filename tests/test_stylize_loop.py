"""The stylization loop: geometry kept, determinism, resume, stop, callbacks, colour cache, guidance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_camera, make_random_scene

from engine.guidance.base import GuidanceBatch, StepInfo
from engine.guidance.weightfree import WeightFreeGuidance, srgb_to_lab
from engine.render import render
from engine.stylize import StylizeConfig, stylize
from engine.stylize.checkpoint import CheckpointError, checkpoint_path
from engine.stylize.colorcache import ViewOperator


def _style(seed: int = 0) -> np.ndarray:
    """Orange/blue stripes with noise: a palette far from the random scene's."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:48, 0:64]
    stripes = ((x + y) // 6) % 2
    img = np.where(stripes[..., None] == 1, [230, 140, 30], [20, 40, 160]).astype(np.float64)
    return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)


def _scene():
    return make_random_scene(120, dtype=torch.float32, seed=3)


def _cams(n: int = 3):
    return [make_camera(40, 40, azimuth_deg=a) for a in np.linspace(0, 120, n)]


def _config(**kw) -> StylizeConfig:
    base = dict(
        steps=6, size=40, progress_bar=False, final_metrics=False, preview_every=2, checkpoint_every=0
    )
    base.update(kw)
    cfg = StylizeConfig.from_preset("fast", **base)
    cfg.options["weightfree"].style_height = 48
    cfg.options["weightfree"].texture_kernels = (3, 5)
    cfg.options["weightfree"].texture_filters = 8
    cfg.options["weightfree"].direction_sets = 2
    return cfg


def _sh_bytes(scene) -> bytes:
    return scene.sh.detach().contiguous().numpy().tobytes()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The stylize runs several tests look at (each run costs a few seconds: share them)."""
    scene, style = _scene(), _style()
    ckpt = tmp_path_factory.mktemp("ckpt")
    done = []
    out = {"scene": scene, "ckpt": ckpt}
    out["full"] = stylize(scene, style, cameras=_cams(), config=_config(steps=8))
    out["again"] = stylize(scene, style, cameras=_cams(), config=_config(steps=8))
    out["other_seed"] = stylize(scene, style, cameras=_cams(), config=_config(steps=8, seed=5))
    out["part"] = stylize(
        scene,
        style,
        cameras=_cams(),
        config=_config(steps=8),
        callback=done.append,
        should_stop=lambda: len(done) >= 3,
        checkpoint_dir=ckpt,
    )
    out["ckpt_exists"] = checkpoint_path(ckpt).is_file()
    out["resumed"] = stylize(scene, style, cameras=_cams(), config=_config(steps=8), checkpoint_dir=ckpt)
    return out


def test_geometry_is_bit_identical_and_colours_change(runs):
    scene, result = runs["scene"], runs["full"]
    assert result.scene.geometry_equal(scene)
    assert not result.interrupted and result.steps_done == 8
    assert not torch.equal(result.scene.sh, scene.sh)
    assert result.scene.sh.dtype == scene.sh.dtype and result.scene.sh.shape == scene.sh.shape
    assert len(result.report["history"]) == 8 and "timings" in result.report


def test_same_seed_same_result_and_other_seed_differs(runs):
    assert _sh_bytes(runs["full"].scene) == _sh_bytes(runs["again"].scene)
    assert _sh_bytes(runs["full"].scene) != _sh_bytes(runs["other_seed"].scene)


def test_resume_reaches_the_uninterrupted_result(runs):
    part, resumed, full = runs["part"], runs["resumed"], runs["full"]
    assert part.interrupted and part.steps_done == 3 and runs["ckpt_exists"]
    assert part.scene.geometry_equal(runs["scene"])
    assert not resumed.interrupted and resumed.report["resumed_from"] == 3
    assert resumed.steps_done == 8
    assert _sh_bytes(resumed.scene) == _sh_bytes(full.scene)
    assert [h["total"] for h in resumed.report["history"]] == [h["total"] for h in full.report["history"]]


def test_checkpoint_of_another_job_is_refused(runs):
    with pytest.raises(CheckpointError, match="lr"):
        stylize(
            runs["scene"],
            _style(),
            cameras=_cams(),
            config=_config(steps=8, lr=0.2),
            checkpoint_dir=runs["ckpt"],
        )


def test_should_stop_stops_within_one_step_and_callback_gets_events():
    events = []
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return len(events) >= 2

    result = stylize(
        _scene(),
        _style(),
        cameras=_cams(),
        config=_config(steps=10),
        callback=events.append,
        should_stop=should_stop,
    )
    assert result.interrupted and result.steps_done == 2
    assert [e.step for e in events] == [1, 2] and all(e.total_steps == 10 for e in events)
    assert set(events[0].losses) >= {"total", "color", "texture", "content"}
    assert events[0].preview is None  # preview_every = 2
    assert events[1].preview.dtype == np.uint8 and events[1].preview.shape == (40, 40, 3)


def test_colour_cache_matches_the_renderer():
    scene = _scene()
    cam = _cams(1)[0]
    op = ViewOperator(scene, cam)
    bg = torch.tensor([0.2, 0.3, 0.4])
    full = render(scene, cam, background=bg, backend="torch")
    assert torch.allclose(op.render(scene.sh, bg), full.image.permute(2, 0, 1), atol=1e-5)
    assert torch.allclose(op.alpha, full.alpha, atol=1e-6)
    # gradients through the cache equal the renderer's
    sh = scene.sh.clone().requires_grad_(True)
    w = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(0))
    (op.render(sh, bg) * w).sum().backward()
    g_cache = sh.grad.clone()
    sh.grad = None
    (
        render(scene.replace(sh=sh), cam, background=bg, backend="torch").image.permute(2, 0, 1) * w
    ).sum().backward()
    assert torch.allclose(g_cache, sh.grad, atol=1e-5)


def test_without_cache_same_path_as_with_cache(runs):
    b = stylize(runs["scene"], _style(), cameras=_cams(), config=_config(steps=8, color_cache=False))
    assert runs["full"].report["color_cache"] and not b.report["color_cache"]
    assert torch.allclose(runs["full"].scene.sh, b.scene.sh, atol=1e-3)


def test_weightfree_loss_decreases_and_gradients_reach_sh():
    scene, style = _scene(), _style()
    cams = _cams(2)
    cfg = _config()
    guidance = WeightFreeGuidance(cfg, style, "cpu")
    ops = [ViewOperator(scene, c) for c in cams]
    bg = torch.zeros(3)
    originals = torch.stack([op.render(scene.sh, bg) for op in ops]).detach()
    masks = torch.stack([op.alpha[None] for op in ops])
    dc = scene.sh[:, :1].clone().requires_grad_(True)
    opt = torch.optim.Adam([dc], lr=0.05)
    first = last = None
    for step in range(25):
        images = torch.stack([op.render(dc, bg) for op in ops])
        info = StepInfo(step=step, total_steps=25, phase="global", mode="global", alpha=0.0, view_ids=[0, 1])
        terms = guidance(GuidanceBatch(images, originals, masks, info))
        loss = terms["color"] + terms["texture"]
        opt.zero_grad()
        loss.backward()
        if step == 0:
            assert dc.grad is not None and float(dc.grad.abs().sum()) > 0
            first = float(terms["color"].detach())
        opt.step()
        last = float(terms["color"].detach())
    assert last < 0.5 * first


def test_colour_ceiling_is_a_hinge_on_the_distance_ratio_to_the_original():
    from engine.stylize.config import StylizeConfig

    style = _style()
    img = torch.rand(1, 3, 40, 40)
    mask = torch.ones(1, 1, 40, 40)
    info = StepInfo(step=0, total_steps=1, phase="global", mode="global", alpha=0.0, view_ids=[0])

    def terms(ceiling, images, originals):
        opts = {"color_weight": 1e-3, "texture_weight": 0.0, "content_weight": 0.0, "color_ceiling": ceiling}
        g = WeightFreeGuidance(StylizeConfig(options={"weightfree": opts}), style, "cpu")
        return g(GuidanceBatch(images, originals, mask, info))

    assert "color_ceiling" not in terms(0.0, img, img)  # off by default
    # the render IS the original: ratio 1, above a ceiling of 0.5 -> (1 - 0.25) of the squared distance
    t = terms(0.5, img, img)
    torch.testing.assert_close(t["color_ceiling"], 0.75 * t["color"] / 1e-3)
    # a render already much closer to the style than the original: below the ceiling, the hinge is 0
    close = torch.from_numpy(style[4:44, 4:44]).permute(2, 0, 1)[None].float() / 255
    far = torch.zeros(1, 3, 40, 40)
    assert float(terms(0.9, close, far)["color_ceiling"]) == 0.0
    moving = close.clone().requires_grad_(True)
    terms(0.9, moving, moving.detach())["color_ceiling"].backward()  # above it, it pulls the render
    assert moving.grad.abs().sum() > 0


def test_lab_conversion_known_values():
    rgb = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    lab = srgb_to_lab(rgb)
    assert torch.allclose(lab[0], torch.tensor([100.0, 0.0, 0.0]), atol=0.05)
    assert torch.allclose(lab[1], torch.tensor([0.0, 0.0, 0.0]), atol=0.05)
    assert torch.allclose(lab[2], torch.tensor([53.24, 80.09, 67.20]), atol=0.1)


def test_bad_inputs_are_named():
    scene = _scene()
    with pytest.raises(ValueError, match="uint8"):
        stylize(scene, np.zeros((16, 16, 4), np.uint8), cameras=_cams(), config=_config())
    with pytest.raises(ValueError, match="too small"):
        stylize(scene, np.zeros((4, 16, 3), np.uint8), cameras=_cams(), config=_config())
    with pytest.raises(ValueError, match="empty"):
        stylize(scene, _style(), cameras=[], config=_config())
    with pytest.raises(TypeError, match="GaussianScene"):
        stylize("scene.ply", _style(), config=_config())


def test_stroke_cells_are_deterministic_elongated_and_cover_every_gaussian():
    from engine.stylize.strokes import mean_per_stroke, stroke_assignment, stroke_count

    scene = make_random_scene(2000, dtype=torch.float32, seed=11)
    a = stroke_assignment(scene, gaussians_per_stroke=50, aspect=6.0, seed=0)
    b = stroke_assignment(scene, gaussians_per_stroke=50, aspect=6.0, seed=0)
    assert torch.equal(a, b) and a.shape == (2000,)
    k = stroke_count(a)
    assert k == 40 and int(a.min()) >= 0
    # cells are longer than wide: the largest principal extent beats the smallest by far on average
    ratios = []
    for s in range(k):
        pts = scene.means[a == s].double()
        if pts.shape[0] >= 8:
            ev = torch.linalg.eigvalsh(torch.cov(pts.T))
            ratios.append(float(ev[-1] / ev[-2].clamp_min(1e-12)))
    assert np.median(ratios) > 2.0
    vals = torch.randn(2000, 3)
    means = mean_per_stroke(vals, a, k)
    assert torch.allclose(means[3], vals[a == 3].mean(0), atol=1e-6)


def test_without_strokes_every_gaussian_is_free_and_runs_are_deterministic():
    scene, style = _scene(), _style()
    a = stylize(scene, style, cameras=_cams(), config=_config(stroke_size=0.0))
    b = stylize(scene, style, cameras=_cams(), config=_config(stroke_size=0.0))
    assert a.scene.geometry_equal(scene) and _sh_bytes(a.scene) == _sh_bytes(b.scene)
    assert not torch.equal(a.scene.sh, scene.sh)


def test_paper_schedule_without_models_falls_back_to_weightfree_in_one_line(caplog, monkeypatch):
    monkeypatch.setenv("SPLATBRUSH_MODELS", "/nonexistent-models-dir")
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-hf-cache")
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-torch-home")
    cfg = StylizeConfig.from_preset(
        "paper", steps=6, size=40, progress_bar=False, final_metrics=False, checkpoint_every=0
    )
    cfg.options["weightfree"].style_height = 48
    cfg.options["weightfree"].direction_sets = 2
    with caplog.at_level("WARNING", logger="splatbrush.stylize"):
        result = stylize(_scene(), _style(), cameras=_cams(), config=cfg)
    notes = [r.message for r in caplog.records if "not available" in r.message]
    assert len(notes) == 1 and "weight-free" in notes[0]
    assert result.report["guidance"] == ["weightfree"] and result.steps_done == 6
    assert {h["step"] for h in result.report["history"]} == set(range(1, 7))
    assert "color" in result.report["history"][0]  # RGB and SDS stages both ran the weight-free terms
