"""Colour parametrization of a job: partial stylization masks, the displayable range, loss weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_stylize_loop import _cams, _config, _scene, _style

from engine.render.sh import C0
from engine.stylize import stylize


@pytest.mark.parametrize("finish", [{}, {"palette_blend": 1.0}], ids=["loop", "with_palette_finish"])
def test_mask_keeps_the_outside_bit_identical_and_changes_the_inside(finish):
    scene, style = _scene(), _style()
    n = scene.num_gaussians
    mask = np.zeros(n)
    mask[: n // 2] = 1.0
    r = stylize(scene, style, cameras=_cams(), config=_config(stroke_size=0.0, **finish), mask=mask)
    if finish:
        assert r.report["palette_finish"]["blend"] == 1.0
    out, orig = r.scene.sh.numpy(), scene.sh.numpy()
    assert out[n // 2 :].tobytes() == orig[n // 2 :].tobytes()
    assert not np.array_equal(out[: n // 2], orig[: n // 2])
    assert r.report["masked_gaussians"] == n // 2
    with pytest.raises(ValueError, match="Gaussians"):
        stylize(scene, style, cameras=_cams(), config=_config(), mask=np.ones(n + 1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stylize(scene, style, cameras=_cams(), config=_config(), mask=np.full(n, 2.0))


def test_displayable_colours_end_in_range_and_the_report_counts_them():
    scene, style = _scene(), _style()
    bright = scene.replace(sh=scene.sh.clone())
    bright.sh[:5, 0] = 3.0  # C0 * 3 + 0.5 = 1.35: out of range at the start
    r = stylize(bright, style, cameras=_cams(), config=_config(stroke_size=0.0))
    rgb = C0 * r.scene.sh[:, 0] + 0.5
    assert float(rgb.min()) >= -1e-6 and float(rgb.max()) <= 1 + 1e-6  # float32 rounding of C0 * dc + 0.5
    rng = r.report["colour_range"]
    assert rng["out_of_range_start"] >= 5 and rng["out_of_range_end"] == 0
    off = stylize(bright, style, cameras=_cams(), config=_config(stroke_size=0.0, displayable=False))
    assert off.report["colour_range"]["out_of_range_end"] > 0


def test_loss_weight_named_like_its_guidance_is_applied_once():
    from engine.stylize.guidance_set import JobGuidance

    class Fixed:
        def __call__(self, batch):
            return {"dssd": torch.tensor(2.0), "extra": torch.tensor(3.0)}

    g = JobGuidance({"dssd": Fixed()}, ["dssd"], schedule=None)

    class Timer:
        def __call__(self, name):
            import contextlib

            return contextlib.nullcontext()

    terms = g.step_terms({"dssd": 1.0}, None, {"dssd": 0.5, "extra": 2.0}, Timer())
    assert float(terms["dssd"]) == 1.0  # 0.5 * 2, not 0.25 * 2
    assert float(terms["extra"]) == 3.0  # module weight 0.5 * term weight 2.0 * 3
