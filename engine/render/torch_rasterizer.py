"""Fast pure-PyTorch rasterizer: sparse (pixel, Gaussian) pairs, processed in bands of pixel rows.

    rasterize_torch(scene, camera, background [3], sh_degree=None) -> RenderOutput

Same conventions as the dense reference (`reference.py`, gsplat "classic"); see docs/rendering.md.

Algorithm, per band of image rows (bands are sized so that each holds at most `max_pairs` candidate pairs):
  1. every visible Gaussian's exact bounding box of its alpha >= 1/255 ellipse, clipped to the band, is
     enumerated into (pixel, Gaussian) pairs; pairs whose alpha < 1/255 are dropped;
  2. Gaussians are numbered front to back, so a stable sort of the pairs by pixel gives, per pixel, the
     Gaussians in depth order;
  3. transmittance is a segmented cumulative sum of log(1 - alpha) (in float64), compositing stops where it
     would fall to T_MIN, and the weights w = alpha T are scattered into colour, depth and alpha sums.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..cameras.camera import Camera
from ..scene.gaussians import GaussianScene
from .projection import ALPHA_MAX, ALPHA_MIN, T_MIN, project
from .types import RenderOutput

LOG_T_MIN = math.log(T_MIN)
DEFAULT_MAX_PAIRS = 4_000_000  # candidate pairs per band: bounds the working memory (~ 100 B per pair)


def _bounding_boxes(means2d: Tensor, conics: Tensor, opac: Tensor, width: int, height: int) -> Tensor:
    """Inclusive pixel box [x0, x1, y0, y1] (long, [N, 4]) of each Gaussian's alpha >= ALPHA_MIN ellipse,
    clipped to the image; empty boxes have x1 < x0 or y1 < y0."""
    with torch.no_grad():
        A, B, C = conics[:, 0], conics[:, 1], conics[:, 2]
        det = (A * C - B * B).clamp_min(1e-30)
        # alpha >= ALPHA_MIN  <=>  d^T conic d <= 2 ln(o / ALPHA_MIN) = extent^2; its half-widths are
        # extent * sqrt(cov_xx), extent * sqrt(cov_yy) with cov = conic^-1.
        extent2 = 2.0 * torch.log(opac / ALPHA_MIN).clamp_min(0.0)
        rx = torch.sqrt(extent2 * C / det)
        ry = torch.sqrt(extent2 * A / det)
        # pixel p has centre p + 0.5; widen by one pixel against rounding.
        x0 = torch.floor(means2d[:, 0] - rx - 0.5) - 1
        x1 = torch.ceil(means2d[:, 0] + rx - 0.5) + 1
        y0 = torch.floor(means2d[:, 1] - ry - 0.5) - 1
        y1 = torch.ceil(means2d[:, 1] + ry - 0.5) + 1
        box = torch.stack(
            [x0.clamp(0, width - 1), x1.clamp(-1, width - 1), y0.clamp(0, height - 1), y1], dim=1
        )
        box[:, 3] = box[:, 3].clamp(-1, height - 1)
        box = torch.nan_to_num(box, nan=-1.0).long()
        box[:, 1] = torch.maximum(box[:, 1], box[:, 0] - 1)
        box[:, 3] = torch.maximum(box[:, 3], box[:, 2] - 1)
    return box


def _bands(box: Tensor, height: int, max_pairs: int) -> list[tuple[int, int]]:
    """Split rows [0, height) into bands of consecutive rows, each with at most ~max_pairs box pixels
    (a single row may exceed it)."""
    w = (box[:, 1] - box[:, 0] + 1).clamp_min(0)
    h_ok = box[:, 3] >= box[:, 2]
    diff = torch.zeros(height + 1, dtype=torch.long, device=box.device)
    diff.index_add_(0, box[h_ok, 2], w[h_ok])
    diff.index_add_(0, box[h_ok, 3] + 1, -w[h_ok])
    per_row = torch.cumsum(diff[:height], 0).tolist()
    bands, start, acc = [], 0, 0
    for row, n in enumerate(per_row):
        if acc > 0 and acc + n > max_pairs:
            bands.append((start, row))
            start, acc = row, 0
        acc += n
    bands.append((start, height))
    return bands


def _band_pairs(box: Tensor, y0: int, y1: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Candidate pairs of rows [y0, y1): (gaussian index, pixel x, pixel y), in Gaussian order."""
    gy0 = box[:, 2].clamp_min(y0)
    gy1 = box[:, 3].clamp_max(y1 - 1)
    w = box[:, 1] - box[:, 0] + 1
    h = gy1 - gy0 + 1
    hit = torch.nonzero((h > 0) & (w > 0)).squeeze(1)
    w, h, gy0 = w[hit], h[hit], gy0[hit]
    counts = w * h
    total = int(counts.sum())
    gid = torch.repeat_interleave(hit, counts, output_size=total)
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(total, device=box.device) - torch.repeat_interleave(
        starts, counts, output_size=total
    )
    wg = torch.repeat_interleave(w, counts, output_size=total)
    px = box[gid, 0] + local % wg
    py = torch.repeat_interleave(gy0, counts, output_size=total) + local // wg
    return gid, px, py


def _pair_alpha(
    means2d: Tensor, conics: Tensor, opac: Tensor, gid: Tensor, px: Tensor, py: Tensor
) -> tuple[Tensor, Tensor]:
    """(sigma, alpha before the ALPHA_MIN cut) of each pair; same arithmetic as the reference."""
    m = means2d[gid]
    cn = conics[gid]
    dx = (px.to(m.dtype) + 0.5) - m[:, 0]
    dy = (py.to(m.dtype) + 0.5) - m[:, 1]
    sigma = 0.5 * (cn[:, 0] * dx**2 + cn[:, 2] * dy**2) + cn[:, 1] * (dx * dy)
    alpha = torch.clamp_max(opac[gid] * torch.exp(-sigma), ALPHA_MAX)
    return sigma, alpha


def _composite_band(
    means2d: Tensor,
    conics: Tensor,
    opac: Tensor,
    feats: Tensor,  # [G, F] colour (3) and depth (1), depth-sorted Gaussians
    box: Tensor,
    y0: int,
    y1: int,
    width: int,
) -> tuple[Tensor, Tensor]:
    """(feature sums [P, F], alpha [P]) of the P = (y1 - y0) * width pixels of a band. Plain autograd."""
    gid, px, py = _band_pairs(box, y0, y1, width)
    with torch.no_grad():
        sigma, alpha = _pair_alpha(means2d, conics, opac, gid, px, py)
        keep = torch.nonzero((sigma >= 0) & (alpha >= ALPHA_MIN)).squeeze(1)
        gid, pix = gid[keep], (py[keep] - y0) * width + px[keep]
        pix, order = torch.sort(pix, stable=True)
        gid = gid[order]
    _, alpha = _pair_alpha(means2d, conics, opac, gid, pix % width, pix // width + y0)
    n_pix = (y1 - y0) * width
    log1m = torch.log1p(-alpha.double())
    cs = torch.cumsum(log1m, 0) - log1m  # exclusive global prefix
    counts = torch.bincount(pix, minlength=n_pix)
    seg_start = torch.cumsum(counts, 0) - counts
    log_t = cs - cs[seg_start[pix]]  # log transmittance before each pair
    included = (log_t + log1m) > LOG_T_MIN
    w = (alpha * torch.exp(log_t).to(alpha.dtype)) * included.to(alpha.dtype)
    out = torch.zeros(n_pix, feats.shape[1], dtype=feats.dtype, device=feats.device)
    out = out.index_add(0, pix, w[:, None] * feats[gid])
    acc = torch.zeros(n_pix, dtype=feats.dtype, device=feats.device).index_add(0, pix, w)
    return out, acc


def rasterize_torch(
    scene: GaussianScene,
    camera: Camera,
    background: Tensor,  # [3]
    sh_degree: int | None = None,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> RenderOutput:
    """Render `scene` from `camera` on the scene's device; differentiable w.r.t. every scene tensor."""
    p = project(scene, camera, sh_degree)
    idx = torch.nonzero(p.valid).squeeze(1)
    order = idx[torch.argsort(p.depths[idx], stable=True)]  # front to back, as the reference
    means2d, conics, opac = p.means2d[order], p.conics[order], p.opacities[order]
    feats = torch.cat([p.colors[order], p.depths[order, None]], dim=1)  # [G, 4]
    H, W = camera.height, camera.width
    box = _bounding_boxes(means2d.detach(), conics.detach(), opac.detach(), W, H)

    sums, accs = [], []
    for y0, y1 in _bands(box, H, max_pairs):
        s, a = _composite_band(means2d, conics, opac, feats, box, y0, y1, W)
        sums.append(s)
        accs.append(a)
    feat_sum = torch.cat(sums).reshape(H, W, feats.shape[1])
    alpha = torch.cat(accs).reshape(H, W)
    image = feat_sum[..., :3] + (1.0 - alpha)[..., None] * background
    depth_sum = feat_sum[..., 3]
    depth = torch.where(alpha > 0, depth_sum / alpha.clamp_min(1e-10), torch.zeros_like(depth_sum))
    return RenderOutput(image=image, alpha=alpha, depth=depth)
