"""Evaluation numbers for a stylized scene (deterministic: fixed seeds, fixed directions).

    style_color_distance(images, masks, style)  sliced Wasserstein-2 distance in CIELAB between the object's
                                                rendered pixels and the style image's pixels (lower = closer
                                                palette); compare stylized against unstylized: the ratio
    luminance_ssim(a, b, masks)                 SSIM of the luminance (CIELAB L / 100), averaged over the
                                                object's pixels (structure kept; 1 = identical)
    reprojection_error(images, depths, ...)     multi-view consistency: colour difference of a surface point
                                                seen in two adjacent views (depth-tested), mean over pairs
    evaluate_scenes(original, stylized, style)  all of the above on orbit views, as a dict

Model-based scores (CLIP style/content similarity, CSD) are added by `model_scores` when the models exist.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .cameras.camera import Camera
from .scene.gaussians import GaussianScene

METRIC_SEED = 20250415
METRIC_DIRECTIONS = 128
METRIC_STYLE_HEIGHT = 256
MAX_POINTS = 200_000


def _lab(images: Tensor) -> Tensor:
    from .guidance.weightfree import srgb_to_lab

    return srgb_to_lab(images.double())


def style_pixels_lab(style_image: np.ndarray, height: int = METRIC_STYLE_HEIGHT) -> Tensor:
    """[P, 3] float64 CIELAB pixels of the style image resized to `height` rows."""
    from .guidance.weightfree import to_style_tensor

    style = to_style_tensor(style_image, height, "cpu").double()
    return _lab(style)[0].reshape(3, -1).T


def sliced_wasserstein(
    a: Tensor, b: Tensor, n_dirs: int = METRIC_DIRECTIONS, seed: int = METRIC_SEED
) -> float:
    """Sliced Wasserstein-2 distance between point sets a [n, D] and b [m, D] (float64, fixed directions):
    sqrt(mean over directions of the squared W2 of the 1D projections), in the units of the points."""
    a, b = a.double().cpu(), b.double().cpu()
    if a.shape[0] > MAX_POINTS:
        a = a[:: math.ceil(a.shape[0] / MAX_POINTS)]
    if b.shape[0] > MAX_POINTS:
        b = b[:: math.ceil(b.shape[0] / MAX_POINTS)]
    if a.shape[0] == 0 or b.shape[0] == 0:
        raise ValueError(f"sliced_wasserstein needs non-empty point sets, got {a.shape[0]} and {b.shape[0]}")
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(a.shape[1], n_dirs, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    from .guidance.weightfree import _resample

    n = max(a.shape[0], b.shape[0])
    qa = _resample(torch.sort(a @ dirs, dim=0).values.T.contiguous(), n)  # [K, n]
    qb = _resample(torch.sort(b @ dirs, dim=0).values.T.contiguous(), n)
    return float(((qa - qb) ** 2).mean().sqrt())


def object_pixels_lab(images: Tensor, masks: Tensor, threshold: float = 0.5) -> Tensor:
    """[n, 3] CIELAB colours of the pixels whose mask > threshold. images [B,3,H,W], masks [B,1,H,W]."""
    lab = _lab(images).permute(0, 2, 3, 1)
    return lab[masks[:, 0] > threshold]


def style_color_distance(images: Tensor, masks: Tensor, style_image: np.ndarray | Tensor) -> float:
    """Sliced W2 in CIELAB between the object's pixels and the style's. `style_image`: uint8 [H,W,3] or
    precomputed `style_pixels_lab` [P, 3]."""
    style = style_image if isinstance(style_image, Tensor) else style_pixels_lab(style_image)
    return sliced_wasserstein(object_pixels_lab(images, masks), style)


def _ssim_map(x: Tensor, y: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """[B,1,H,W] in [0,1] -> SSIM map [B,1,H,W] (Gaussian window, replicate padding)."""
    t = torch.arange(window, dtype=x.dtype) - window // 2
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.device)
    k2 = (k[:, None] * k[None, :])[None, None]

    def blur(z: Tensor) -> Tensor:
        return F.conv2d(F.pad(z, (window // 2,) * 4, mode="replicate"), k2)

    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


def luminance_ssim(a: Tensor, b: Tensor, masks: Tensor | None = None, threshold: float = 0.5) -> float:
    """SSIM of CIELAB lightness between image batches a, b [B,3,H,W], averaged over the mask's pixels
    (the whole image when masks is None). The identical background would otherwise inflate the score."""
    la, lb = _lab(a)[:, :1] / 100.0, _lab(b)[:, :1] / 100.0
    m = _ssim_map(la, lb)
    if masks is None:
        return float(m.mean())
    sel = masks.double() > threshold
    if not bool(sel.any()):
        raise ValueError("luminance_ssim: the mask selects no pixel")
    return float(m[sel].mean())


def _unproject(depth: Tensor, cam: Camera) -> Tensor:
    """[H, W] depth -> [H*W, 3] world points."""
    h, w = depth.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    z = depth.double().reshape(-1)
    x = ((xs.reshape(-1) + 0.5) - cam.cx) / cam.fx * z
    y = ((ys.reshape(-1) + 0.5) - cam.cy) / cam.fy * z
    pc = torch.stack([x, y, z], dim=-1)
    c2w = torch.as_tensor(cam.camera_to_world, dtype=torch.float64)
    return pc @ c2w[:3, :3].T + c2w[:3, 3]


def reprojection_error(
    images: Tensor,  # [V, 3, H, W]
    depths: Tensor,  # [V, H, W]
    alphas: Tensor,  # [V, H, W]
    cameras: Sequence[Camera],
    rel_depth_tol: float = 0.02,
) -> float:
    """Mean absolute RGB difference (0..1) between a pixel of view i and the pixel of view i+1 that sees
    the same surface point (depth within rel_depth_tol), over adjacent pairs (cyclic). NaN when no pixel
    matches."""
    total, count = 0.0, 0
    v = len(cameras)
    for i in range(v if v > 2 else v - 1):
        j = (i + 1) % v
        ci, cj = cameras[i], cameras[j]
        sel = (alphas[i].reshape(-1) > 0.9) & (depths[i].reshape(-1) > 0)
        pts = _unproject(depths[i], ci)[sel]
        w2c = torch.as_tensor(cj.world_to_camera, dtype=torch.float64)
        pc = pts @ w2c[:3, :3].T + w2c[:3, 3]
        z = pc[:, 2]
        u = (pc[:, 0] / z.clamp_min(1e-12)) * cj.fx + cj.cx
        vv = (pc[:, 1] / z.clamp_min(1e-12)) * cj.fy + cj.cy
        ui, vi = torch.floor(u).long(), torch.floor(vv).long()
        h, w = depths[j].shape
        ok = (z > 0) & (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
        ui, vi, z = ui.clamp(0, w - 1), vi.clamp(0, h - 1), z
        dj = depths[j].double()[vi, ui]
        aj = alphas[j].double()[vi, ui]
        ok &= (aj > 0.9) & ((dj - z).abs() <= rel_depth_tol * z.abs())
        if not bool(ok.any()):
            continue
        col_i = images[i].double().reshape(3, -1)[:, sel][:, ok]
        col_j = images[j].double()[:, vi[ok], ui[ok]]
        total += float((col_i - col_j).abs().mean(dim=0).sum())
        count += int(ok.sum())
    return total / count if count else float("nan")


def render_views(
    scene: GaussianScene, cameras: Sequence[Camera], backend: str = "auto", background=(0.0, 0.0, 0.0)
) -> tuple[Tensor, Tensor, Tensor]:
    """(images [V,3,H,W], alphas [V,H,W], depths [V,H,W]) on CPU, without gradients."""
    from .render import render

    imgs, alphas, depths = [], [], []
    with torch.no_grad():
        for cam in cameras:
            out = render(scene, cam, background=background, backend=backend)
            imgs.append(out.image.permute(2, 0, 1).float().cpu())
            alphas.append(out.alpha.float().cpu())
            depths.append(out.depth.float().cpu())
    return torch.stack(imgs), torch.stack(alphas), torch.stack(depths)


def model_scores(images: Tensor, originals: Tensor, style_image: np.ndarray) -> dict[str, float]:
    """CLIP/CSD scores when the model engineer's `engine.models` says they are available; {} otherwise.
    Hook: a module `engine.metrics_models` with `scores(images, originals, style_image) -> dict`."""
    try:
        from . import metrics_models  # type: ignore[attr-defined]
    except ImportError:
        return {}
    return dict(metrics_models.scores(images, originals, style_image))


def evaluate_scenes(
    original: GaussianScene,
    stylized: GaussianScene,
    style_image: np.ndarray,
    cameras: Sequence[Camera] | None = None,
    views: int = 8,
    size: int = 256,
    backend: str = "auto",
    with_models: bool = True,
) -> dict[str, Any]:
    """Every metric on `cameras` (default: `views` orbit views of `size` px). Keys:
    style_distance_original, style_distance_stylized, style_distance_ratio, ssim_luminance,
    reprojection_error_original, reprojection_error_stylized, geometry_identical, views, size
    (+ model scores)."""
    if cameras is None:
        from .stylize.parts import default_cameras

        cameras = default_cameras(original, views, size)
    im0, a0, d0 = render_views(original, cameras, backend)
    im1, a1, d1 = render_views(stylized, cameras, backend)
    masks = a0[:, None]
    style = style_pixels_lab(style_image)
    d_orig = style_color_distance(im0, masks, style)
    d_styl = style_color_distance(im1, masks, style)
    out: dict[str, Any] = {
        "views": len(cameras),
        "size": max(cameras[0].width, cameras[0].height),
        "style_distance_original": d_orig,
        "style_distance_stylized": d_styl,
        "style_distance_ratio": d_styl / d_orig if d_orig > 0 else float("nan"),
        "ssim_luminance": luminance_ssim(im0, im1, masks),
        "reprojection_error_original": reprojection_error(im0, d0, a0, cameras),
        "reprojection_error_stylized": reprojection_error(im1, d1, a1, cameras),
        "geometry_identical": original.geometry_equal(stylized),
    }
    if with_models:
        out.update(model_scores(im1, im0, style_image))
    return out
