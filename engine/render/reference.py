"""Dense brute-force compositor: every Gaussian at every pixel. Slow and exact; the golden reference.

Use float64 scenes for tests. Pixels are processed in chunks so memory stays bounded
(`chunk_pixels x N` values at a time).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..cameras.camera import Camera
from ..scene.gaussians import GaussianScene
from .projection import ALPHA_MAX, ALPHA_MIN, T_MIN, project
from .types import RenderOutput


def rasterize_reference(
    scene: GaussianScene,
    camera: Camera,
    background: Tensor,  # [3]
    sh_degree: int | None = None,
    chunk_pixels: int = 4096,
) -> RenderOutput:
    p = project(scene, camera, sh_degree)
    idx = torch.nonzero(p.valid).squeeze(1)
    order = idx[torch.argsort(p.depths[idx], stable=True)]  # front to back
    means2d, conics = p.means2d[order], p.conics[order]
    opac, colors, depths = p.opacities[order], p.colors[order], p.depths[order]

    H, W = camera.height, camera.width
    dtype, device = scene.means.dtype, scene.means.device
    ys, xs = torch.meshgrid(
        torch.arange(H, device=device, dtype=dtype),
        torch.arange(W, device=device, dtype=dtype),
        indexing="ij",
    )
    pix = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1) + 0.5  # [P, 2] pixel centres

    images, alphas, depth_sums = [], [], []
    for start in range(0, pix.shape[0], chunk_pixels):
        d = pix[start : start + chunk_pixels, None, :] - means2d[None]  # [p, n, 2]
        sigma = 0.5 * (conics[:, 0] * d[..., 0] ** 2 + conics[:, 2] * d[..., 1] ** 2) + conics[:, 1] * (
            d[..., 0] * d[..., 1]
        )
        alpha = torch.clamp_max(opac * torch.exp(-sigma), ALPHA_MAX)
        alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))
        t_incl = torch.cumprod(1.0 - alpha, dim=1)  # transmittance after each Gaussian
        included = (t_incl > T_MIN).to(dtype)  # monotone: False from the first stopping Gaussian on
        t_excl = torch.cat([torch.ones_like(t_incl[:, :1]), t_incl[:, :-1]], dim=1)
        w = alpha * t_excl * included  # [p, n]
        acc = w.sum(dim=1)
        images.append(w @ colors + (1.0 - acc)[:, None] * background)
        alphas.append(acc)
        depth_sums.append(w @ depths)

    alpha_img = torch.cat(alphas).reshape(H, W)
    depth_sum = torch.cat(depth_sums).reshape(H, W)
    depth = torch.where(alpha_img > 0, depth_sum / alpha_img.clamp_min(1e-10), torch.zeros_like(depth_sum))
    return RenderOutput(image=torch.cat(images).reshape(H, W, 3), alpha=alpha_img, depth=depth)
