"""Palette and structure numbers: sliced Wasserstein-2 in CIELAB against the style image, luminance SSIM."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

METRIC_SEED = 20250415
METRIC_DIRECTIONS = 128
METRIC_STYLE_HEIGHT = 256
MAX_POINTS = 50_000  # subsampled with a stride above this: ~0.1 unit of W2, 4x faster than 200k


def _lab(images: Tensor) -> Tensor:
    from ..guidance.weightfree import srgb_to_lab

    return srgb_to_lab(images.double())


def style_pixels_lab(style_image: np.ndarray, height: int = METRIC_STYLE_HEIGHT) -> Tensor:
    """[P, 3] float64 CIELAB pixels of the style image resized to `height` rows."""
    from ..guidance.weightfree import to_style_tensor

    style = to_style_tensor(style_image, height, "cpu").double()
    return _lab(style)[0].reshape(3, -1).T


def sliced_wasserstein(
    a: Tensor, b: Tensor, n_dirs: int = METRIC_DIRECTIONS, seed: int = METRIC_SEED
) -> float:
    """Sliced Wasserstein-2 distance between point sets a [n, D] and b [m, D] (float64, fixed directions):
    sqrt(mean over directions of the squared W2 of the 1D projections), in the units of the points."""
    return sorted_distance(sorted_projections(a, n_dirs, seed), sorted_projections(b, n_dirs, seed))


def sorted_projections(points: Tensor, n_dirs: int = METRIC_DIRECTIONS, seed: int = METRIC_SEED) -> Tensor:
    """[K, n'] the sorted projections of points [n, D] on the metric's fixed directions (a strided subsample
    above MAX_POINTS): one side of `sliced_wasserstein`, to compute once for a set compared many times."""
    points = points.double().cpu()
    if points.shape[0] > MAX_POINTS:
        points = points[:: math.ceil(points.shape[0] / MAX_POINTS)]
    if points.shape[0] == 0:
        raise ValueError("sliced_wasserstein needs non-empty point sets, got an empty one")
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(points.shape[1], n_dirs, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    return torch.sort(points @ dirs, dim=0).values.T.contiguous()


def sorted_distance(qa: Tensor, qb: Tensor) -> float:
    """`sliced_wasserstein` of two `sorted_projections` [K, n] and [K, m] (same directions)."""
    from ..guidance.weightfree import _resample

    n = max(qa.shape[1], qb.shape[1])
    return float(((_resample(qa, n) - _resample(qb, n)) ** 2).mean().sqrt())


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


def luminance_ssim_sums(a: Tensor, b: Tensor, masks: Tensor | None = None, threshold: float = 0.5):
    """(sum of the SSIM map over the selected pixels, their count) for batches a, b [B,3,H,W]: lets callers
    average over views of different sizes, one view at a time."""
    la, lb = _lab(a)[:, :1] / 100.0, _lab(b)[:, :1] / 100.0
    m = _ssim_map(la, lb)
    if masks is None:
        return float(m.sum()), m.numel()
    sel = masks.double() > threshold
    return float(m[sel].sum()), int(sel.sum())


def luminance_ssim(a: Tensor, b: Tensor, masks: Tensor | None = None, threshold: float = 0.5) -> float:
    """SSIM of CIELAB lightness between image batches a, b [B,3,H,W], averaged over the mask's pixels
    (the whole image when masks is None). The identical background would otherwise inflate the score."""
    total, count = luminance_ssim_sums(a, b, masks, threshold)
    if count == 0:
        raise ValueError("luminance_ssim: the mask selects no pixel")
    return total / count
