"""The dense reference compositor against hand-computed pictures (it is the golden data for every backend)."""

from __future__ import annotations

import math

import torch

from engine.cameras import Camera
from engine.render import render
from engine.render.projection import ALPHA_MAX, T_MIN
from engine.scene import GaussianScene, rgb_to_sh_dc


def _scene(means, scales, opacities, colors):
    n = len(means)
    t = lambda v: torch.as_tensor(v, dtype=torch.float64)  # noqa: E731
    return GaussianScene.from_activated(t(means), t([[1.0, 0, 0, 0]] * n), t(scales), t(opacities), t(colors))


def _cam(w=33, h=33, f=40.0):
    import numpy as np

    return Camera(np.eye(4), f, f, w / 2, h / 2, w, h)


def test_single_isotropic_gaussian_matches_closed_form():
    # A Gaussian of world std s at depth z has screen std f s / z (plus the 0.3 px^2 low-pass filter).
    s, z, f, o = 0.05, 2.0, 40.0, 0.8
    scene = _scene([[0, 0, z]], [[s, s, s]], [o], [[0.2, 0.6, 1.0]])
    cam = _cam(f=f)
    out = render(scene, cam, background=(0.0, 0.0, 0.0), backend="reference")
    var = (f * s / z) ** 2 + 0.3
    for py, px in [(16, 16), (16, 18), (13, 17)]:
        dx, dy = px + 0.5 - 16.5, py + 0.5 - 16.5
        a = min(ALPHA_MAX, o * math.exp(-0.5 * (dx * dx + dy * dy) / var))
        a = a if a >= 1 / 255 else 0.0
        assert math.isclose(out.alpha[py, px].item(), a, rel_tol=1e-9)
        assert torch.allclose(out.image[py, px], torch.tensor([0.2, 0.6, 1.0], dtype=torch.float64) * a)
        if a > 0:
            assert math.isclose(out.depth[py, px].item(), z, rel_tol=1e-9)
    assert out.alpha[0, 0] == 0 and out.depth[0, 0] == 0


def test_front_to_back_order_and_background():
    scene = _scene([[0, 0, 3.0], [0, 0, 2.0]], [[0.5] * 3, [0.5] * 3], [0.5, 0.5], [[1.0, 0, 0], [0, 0, 1.0]])
    out = render(scene, _cam(), background=(0.0, 1.0, 0.0), backend="reference")
    c = out.image[16, 16]
    # blue (nearer) first: 0.5 blue, then 0.25 red, 0.25 green background (alphas ~0.5 at the centre)
    assert c[2] > c[0] > 0 and abs(c[1].item() - (1 - out.alpha[16, 16].item())) < 1e-12


def test_compositing_stops_before_transmittance_falls_to_t_min():
    # Layers of alpha 0.95 leave T = 0.05^k: 5e-2, 2.5e-3, 1.25e-4, then 6.25e-6 <= T_MIN, so the fourth
    # layer (and everything behind it) is skipped.
    o, n = 0.95, 5
    scene = _scene(
        [[0, 0, 2.0 + i] for i in range(n)],
        [[2.0] * 3] * n,
        [o] * n,
        [[1.0, 0, 0]] * 3 + [[0, 1.0, 0]] * (n - 3),
    )
    out = render(scene, _cam(), backend="reference")
    assert (1 - o) ** 3 > T_MIN >= (1 - o) ** 4
    assert math.isclose(out.alpha[16, 16].item(), 1 - (1 - o) ** 3, rel_tol=1e-9)
    assert out.image[16, 16, 1].item() == 0.0


def test_colours_come_from_sh_dc():
    rgb = torch.tensor([[0.3, 0.5, 0.9]], dtype=torch.float64)
    assert torch.allclose(rgb_to_sh_dc(rgb) * 0.28209479177387814 + 0.5, rgb)
