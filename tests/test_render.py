"""The fast torch rasterizer against the dense float64 reference (values and gradients), plus real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_camera, make_random_scene

from engine.render import render
from engine.render.torch_rasterizer import rasterize_torch
from engine.scene import GaussianScene

FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")


def _render_with_grads(scene: GaussianScene, camera, background, backend: str, seed: int = 1, **kwargs):
    """Render with leaf copies of the scene tensors; returns (output, grads of a random weighted sum)."""
    leaves = [getattr(scene, f).detach().clone().requires_grad_() for f in FIELDS]
    s = GaussianScene(*leaves)
    if backend == "torch":
        out = rasterize_torch(s, camera, background, **kwargs)
    else:
        out = render(s, camera, background, backend=backend)
    g = torch.Generator().manual_seed(seed)
    loss = sum(
        (t * torch.rand(t.shape, generator=g, dtype=t.dtype)).sum() for t in (out.image, out.alpha, out.depth)
    )
    return out, torch.autograd.grad(loss, leaves, allow_unused=True)


def _assert_close(a, b, what: str, tol: float = 1e-8):
    err = (a - b).abs().max().item()
    scale = max(1.0, b.abs().max().item())
    assert err <= tol * scale, f"{what}: max abs difference {err:.3g} (scale {scale:.3g})"


CASES = [
    # (sh degree, azimuth, camera distance, scene spread, seed)
    (0, 30.0, 4.0, 1.0, 0),
    (1, 120.0, 2.0, 1.5, 1),  # camera inside the spread: Gaussians behind it and off-screen
    (2, 250.0, 3.0, 1.2, 2),
    (3, 330.0, 1.6, 1.5, 3),
]


@pytest.mark.parametrize("deg,azimuth,distance,spread,seed", CASES)
@pytest.mark.parametrize("max_pairs", [4_000_000, 300])  # one band / many bands
def test_matches_reference_values_and_gradients(deg, azimuth, distance, spread, seed, max_pairs):
    scene = make_random_scene(n=90, sh_degree=deg, seed=seed, spread=spread)
    camera = make_camera(width=36, height=27, distance=distance, azimuth_deg=azimuth)
    bg = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    ref, ref_grads = _render_with_grads(scene, camera, bg, "reference")
    out, grads = _render_with_grads(scene, camera, bg, "torch", max_pairs=max_pairs)
    assert 0.05 < ref.alpha.mean().item() < 0.99, "test scene should be partly covered"
    _assert_close(out.image, ref.image, "image")
    _assert_close(out.alpha, ref.alpha, "alpha")
    _assert_close(out.depth, ref.depth, "depth")
    for name, g, r in zip(FIELDS, grads, ref_grads, strict=True):
        assert r is not None and r.abs().max() > 0, f"reference gradient of {name} is empty"
        _assert_close(g, r, f"grad {name}", tol=1e-7)


def test_early_termination_and_opaque_stacks_match_reference():
    # Many large, nearly opaque Gaussians: transmittance falls below T_MIN within a few layers.
    scene = make_random_scene(n=60, seed=7, spread=0.6)
    scene = scene.replace(opacity_logits=torch.full((60,), 5.0, dtype=torch.float64))
    scene = scene.replace(log_scales=scene.log_scales + 1.0)
    camera = make_camera(width=20, height=16, distance=3.0)
    bg = torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64)
    ref, ref_grads = _render_with_grads(scene, camera, bg, "reference")
    out, grads = _render_with_grads(scene, camera, bg, "torch")
    assert ref.alpha.max().item() > 1 - 1e-3
    _assert_close(out.image, ref.image, "image")
    _assert_close(out.alpha, ref.alpha, "alpha")
    _assert_close(out.depth, ref.depth, "depth")
    for name, g, r in zip(FIELDS, grads, ref_grads, strict=True):
        _assert_close(g, r, f"grad {name}", tol=1e-7)


def test_empty_view_gives_background():
    scene = make_random_scene(n=20)
    camera = make_camera(distance=4.0)
    behind = scene.replace(
        means=scene.means * 0.1 + torch.tensor(camera.position) - 2 * torch.tensor(camera.forward)
    )
    out = render(behind, camera, (0.1, 0.2, 0.3), backend="torch")
    assert torch.allclose(out.image, torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64).expand_as(out.image))
    assert out.alpha.abs().max() == 0 and out.depth.abs().max() == 0


def test_float32_close_to_float64_reference():
    scene = make_random_scene(n=200, sh_degree=1, seed=5)
    camera = make_camera(width=48, height=40)
    ref = render(scene, camera, (0.3, 0.3, 0.3), backend="reference")
    out = render(scene.to(dtype=torch.float32), camera, (0.3, 0.3, 0.3), backend="torch")
    assert out.image.dtype == torch.float32
    assert (out.image.double() - ref.image).abs().max() < 1e-4
    assert (out.alpha.double() - ref.alpha).abs().max() < 1e-4


def _load_donut(shared_data: Path) -> GaussianScene:
    from engine.scene.io import load_scene

    return load_scene(shared_data / "scenes" / "donut.ply")


def test_donut_renders_a_picture(shared_data):
    scene = _load_donut(shared_data)
    lo, hi = scene.means.min(0).values.numpy(), scene.means.max(0).values.numpy()
    centre, radius = (lo + hi) / 2, float(np.linalg.norm(hi - lo)) / 2
    from engine.cameras import Camera

    eye = centre + radius * 2.2 * np.array([np.sin(0.7), -0.5, np.cos(0.7)])
    camera = Camera.look_at(eye, centre, np.array([0.0, -1.0, 0.0]), 45.0, 96, 72)
    out = render(scene, camera, (1.0, 1.0, 1.0), backend="torch")
    assert out.image.shape == (72, 96, 3) and torch.isfinite(out.image).all()
    covered = out.alpha > 0.5
    assert 0.05 < covered.float().mean().item() < 0.95, "the donut should fill part of the frame"
    # the object is not white: covered pixels differ from the white background
    assert (1.0 - out.image[covered]).abs().sum(-1).mean() > 0.05
    depth = out.depth[covered]
    dist = float(np.linalg.norm(eye - centre))
    assert ((depth > dist - 2 * radius) & (depth < dist + 2 * radius)).all()


def test_custom_backward_passes_gradcheck():
    from engine.render.projection import project
    from engine.render.torch_rasterizer import _bounding_boxes, _Composite, _Frame

    scene = make_random_scene(n=12, sh_degree=1, seed=11, spread=0.7)
    camera = make_camera(width=14, height=11, distance=3.0)
    p = project(scene, camera)
    keep = torch.nonzero(p.valid).squeeze(1)
    keep = keep[torch.argsort(p.depths[keep])]
    means2d, conics, opac = p.means2d[keep], p.conics[keep], p.opacities[keep]
    feats = torch.cat([p.colors[keep], p.depths[keep, None]], 1)
    box = _bounding_boxes(means2d, conics, opac, camera.width, camera.height)
    inputs = [t.detach().clone().requires_grad_() for t in (means2d, conics, opac, feats)]

    def fn(m, c, o, f):
        geo = torch.cat([m, c, o[:, None]], 1)
        return _Composite.apply(geo, f, box, _Frame.of(camera.width, camera.height), 50)

    assert fn(*inputs)[1].max() > 0.3
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-7, atol=1e-6, fast_mode=True)


def test_colour_only_gradients_with_frozen_geometry():
    # Stylization optimises SH only: the backward then skips the geometry path; it must still be exact.
    scene = make_random_scene(n=80, sh_degree=2, seed=4, spread=1.2)
    camera = make_camera(width=30, height=22, distance=3.0, azimuth_deg=60.0)
    grads = []
    for backend in ("reference", "torch"):
        sh = scene.sh.detach().clone().requires_grad_()
        out = render(scene.replace(sh=sh), camera, (0.5, 0.5, 0.5), backend=backend)
        g = torch.Generator().manual_seed(2)
        (out.image * torch.rand(out.image.shape, generator=g, dtype=torch.float64)).sum().backward()
        grads.append(sh.grad)
    assert grads[0].abs().max() > 0
    _assert_close(grads[1], grads[0], "grad sh", tol=1e-9)


def test_gsplat_backend_without_cuda_raises_a_clear_error():
    from engine.render import RenderError, gsplat_available
    from engine.render.gsplat_backend import rasterize_gsplat

    if gsplat_available():
        pytest.skip("gsplat and CUDA are available here")
    scene = make_random_scene(n=5, dtype=torch.float32)
    with pytest.raises(RenderError, match="gsplat|CUDA"):
        rasterize_gsplat(scene, make_camera(), torch.zeros(3))


@pytest.mark.cuda
def test_gsplat_backend_agrees_with_torch_backend():
    from engine.render import gsplat_available

    if not gsplat_available():
        pytest.skip("needs gsplat and a CUDA GPU")
    # opacities below 0.99 so that gsplat's alpha clamp (0.999) and ours (0.99) never differ
    scene = make_random_scene(n=400, sh_degree=3, seed=9, dtype=torch.float32, spread=1.2)
    scene = scene.replace(opacity_logits=scene.opacity_logits.clamp(max=3.0))
    camera = make_camera(width=96, height=72, distance=3.5, azimuth_deg=40.0)
    outs = {}
    for backend in ("torch", "gsplat"):
        s = scene.to(device="cuda")
        sh = s.sh.detach().clone().requires_grad_()
        out = render(s.replace(sh=sh), camera, (0.2, 0.4, 0.6), backend=backend)
        out.image.sum().backward()
        outs[backend] = (out, sh.grad)
    (a, ga), (b, gb) = outs["torch"], outs["gsplat"]
    assert (a.image - b.image).abs().mean() < 2e-3 and (a.image - b.image).abs().max() < 5e-2
    assert (a.alpha - b.alpha).abs().mean() < 2e-3
    covered = (a.alpha > 0.5) & (b.alpha > 0.5)
    assert ((a.depth - b.depth).abs()[covered] / a.depth[covered]).mean() < 1e-2
    assert (ga - gb).abs().mean() < 1e-2 * ga.abs().mean() + 1e-6


def test_colour_cache_view_matches_the_reference_render_and_its_sh_gradients():
    from engine.stylize.colorcache import ViewOperator

    scene = make_random_scene(n=120, sh_degree=3, seed=12, spread=1.3)
    camera = make_camera(width=34, height=26, distance=2.5, azimuth_deg=200.0)
    bg = torch.tensor([0.1, 0.7, 0.3], dtype=torch.float64)
    view = ViewOperator(scene, camera)
    g = torch.Generator().manual_seed(3)
    weights = torch.rand(26, 34, 3, generator=g, dtype=torch.float64)
    results = []
    for new_sh in (scene.sh, scene.sh * 0.5 + 0.1):  # also after the colours changed
        sh = new_sh.detach().clone().requires_grad_()
        full = render(scene.replace(sh=sh), camera, bg, backend="reference")
        (full.image * weights).sum().backward()
        sh2 = new_sh.detach().clone().requires_grad_()
        fast = view.render(sh2, bg).permute(1, 2, 0)  # [H, W, 3]
        (fast * weights).sum().backward()
        results.append((full, fast, sh.grad, sh2.grad))
    for full, fast, g_full, g_fast in results:
        _assert_close(fast, full.image, "image")
        _assert_close(view.alpha, full.alpha, "alpha")
        _assert_close(view.depth, full.depth, "depth")
        assert g_full.abs().max() > 0
        _assert_close(g_fast, g_full, "grad sh", tol=1e-9)


@pytest.mark.parametrize("width,height", [(1, 1), (7, 5), (40, 17)])
def test_odd_image_sizes_and_a_gaussian_larger_than_the_image(width, height):
    scene = make_random_scene(n=30, sh_degree=1, seed=21, spread=0.8)
    big = make_random_scene(n=1, sh_degree=1, seed=22)
    big = big.replace(means=big.means * 0, log_scales=torch.full_like(big.log_scales, 1.0))
    big = big.replace(opacity_logits=torch.full_like(big.opacity_logits, 2.0))
    scene = GaussianScene(*(torch.cat([getattr(scene, f), getattr(big, f)]) for f in FIELDS))
    camera = make_camera(width=width, height=height, distance=3.0)
    bg = torch.tensor([0.9, 0.1, 0.4], dtype=torch.float64)
    ref, ref_grads = _render_with_grads(scene, camera, bg, "reference")
    out, grads = _render_with_grads(scene, camera, bg, "torch")
    assert ref.alpha.min() > 0.1  # the big Gaussian covers every pixel
    _assert_close(out.image, ref.image, "image")
    _assert_close(out.alpha, ref.alpha, "alpha")
    _assert_close(out.depth, ref.depth, "depth")
    for name, g, r in zip(FIELDS, grads, ref_grads, strict=True):
        _assert_close(g, r, f"grad {name}", tol=1e-7)


def test_composited_pairs_reproduce_the_render():
    from engine.render.torch_rasterizer import composited_pairs

    scene = make_random_scene(n=70, seed=13, spread=1.1)
    camera = make_camera(width=25, height=19, distance=3.0, azimuth_deg=10.0)
    pairs = composited_pairs(scene, camera)
    ref = render(scene, camera, (0.0, 0.0, 0.0), backend="reference")
    n_pix = 25 * 19
    alpha = torch.zeros(n_pix, dtype=torch.float64).index_add(0, pairs.pix, pairs.weight)
    colors = torch.clamp_min(scene.sh[:, 0] * 0.28209479177387814 + 0.5, 0.0)  # SH degree 0, as rendered
    image = torch.zeros(n_pix, 3, dtype=torch.float64).index_add(
        0, pairs.pix, pairs.weight[:, None] * colors.index_select(0, pairs.gaussian)
    )
    assert pairs.gaussian.max() < scene.num_gaussians and (pairs.weight > 0).all()
    _assert_close(alpha.reshape(19, 25), ref.alpha, "alpha")
    _assert_close(pairs.alpha, ref.alpha, "alpha")
    _assert_close(pairs.depth, ref.depth, "depth")
    _assert_close(image.reshape(19, 25, 3), ref.image, "image")
