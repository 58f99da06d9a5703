"""Fast pure-PyTorch rasterizer with a hand-written backward.

    rasterize_torch(scene, camera, background [3], sh_degree=None) -> RenderOutput

Same conventions as the dense reference (`reference.py`, gsplat "classic"); see docs/rendering.md.

Forward (no autograd graph), Gaussians sorted front to back and taken in depth chunks:
  1. each Gaussian's exact bounding box of its alpha >= 1/255 ellipse is cut into 16x16 tiles; tiles whose
     pixels have all finished compositing are dropped; the rest are enumerated into (pixel, Gaussian) pairs,
     again dropping finished pixels and pairs with alpha < 1/255;
  2. a stable sort of a chunk's pairs by pixel gives, per pixel, its Gaussians in depth order;
  3. per-pixel transmittance carries over from chunk to chunk; inside a chunk it is a segmented cumulative
     sum of log(1 - alpha) (float64). A pixel finishes at the first Gaussian that would bring it to <= T_MIN.
  4. the weights w = alpha T are scattered into colour/depth sums and alpha; the composited pairs are kept
     (two int32 per pair) for the backward pass.
Backward: the kept pairs, sorted by pixel, are revisited in slices of whole pixels; alpha and T are
recomputed, the "light behind" each pair is a segmented suffix sum, and gradients of the screen-space
quantities (means2d, conics, opacities, colours, depths) are scattered back; autograd does the projection.
Memory: about max_pairs candidate pairs at a time (~100 bytes each) plus 8 bytes per composited pair.
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
TILE = 16
SPAN_EPS = 1e-3  # pixels; row spans are widened by this against rounding
DEFAULT_MAX_PAIRS = 2_000_000  # candidate pairs handled at once: bounds the working memory


def _bounding_boxes(means2d: Tensor, conics: Tensor, opac: Tensor, width: int, height: int) -> Tensor:
    """Inclusive pixel box [x0, x1, y0, y1] (long, [N, 4]) of each Gaussian's alpha >= ALPHA_MIN ellipse,
    clipped to the image; empty boxes have x1 < x0 or y1 < y0."""
    A, B, C = conics[:, 0], conics[:, 1], conics[:, 2]
    det = (A * C - B * B).clamp_min(1e-30)
    # alpha >= ALPHA_MIN  <=>  d^T conic d <= 2 ln(o / ALPHA_MIN) = extent^2; the ellipse's half-widths are
    # extent * sqrt(cov_xx), extent * sqrt(cov_yy) with cov = conic^-1.
    extent2 = 2.0 * torch.log(opac / ALPHA_MIN).clamp_min(0.0)
    rx = torch.sqrt(extent2 * C / det)
    ry = torch.sqrt(extent2 * A / det)
    # pixel p has its centre at p + 0.5; widen by one pixel against rounding.
    big = float(4 * max(width, height) + 8)
    x0 = (torch.floor(means2d[:, 0] - rx - 0.5) - 1).clamp(-big, big)
    x1 = (torch.ceil(means2d[:, 0] + rx - 0.5) + 1).clamp(-big, big)
    y0 = (torch.floor(means2d[:, 1] - ry - 0.5) - 1).clamp(-big, big)
    y1 = (torch.ceil(means2d[:, 1] + ry - 0.5) + 1).clamp(-big, big)
    box = torch.stack(
        [x0.clamp_min(0), x1.clamp_max(width - 1), y0.clamp_min(0), y1.clamp_max(height - 1)], 1
    )
    return torch.nan_to_num(box, nan=-1.0).long()  # a NaN box becomes empty (x1 < x0 or y1 < y0)


def _enumerate_rects(x0: Tensor, x1: Tensor, y0: Tensor, y1: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """All integer points of inclusive rectangles: (rectangle index, x, y), rectangle by rectangle, rows
    top to bottom."""
    w = (x1 - x0 + 1).clamp_min(0)
    counts = w * (y1 - y0 + 1).clamp_min(0)
    total = int(counts.sum())
    rect = torch.repeat_interleave(torch.arange(len(counts), device=x0.device), counts, output_size=total)
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(total, device=x0.device) - starts[rect]
    wr = w[rect]
    row = torch.div(local, wr, rounding_mode="floor")
    return rect, x0[rect] + (local - row * wr), y0[rect] + row


def _candidates(means2d, conics, opac, box, g0: int, g1: int, tile_alive: Tensor, tw: int):
    """Candidate pairs (gid, px, py) of Gaussians [g0, g1): the pixels of each row's exact span of the
    alpha >= ALPHA_MIN ellipse, on tiles still alive. Gaussian-major, rows top to bottom."""
    b = box[g0:g1]
    # 1. (Gaussian, row) over the bounding box rows
    g, _, y = _enumerate_rects(b[:, 0] * 0, b[:, 0] * 0, b[:, 2], b[:, 3])
    # 2. the ellipse's x-span on the row through the pixel centres (float64; the alpha test is exact)
    sel = lambda t: t[g0:g1].double().index_select(0, g)  # noqa: E731
    mx, my, A, B, C = (
        sel(means2d[:, 0]),
        sel(means2d[:, 1]),
        sel(conics[:, 0]),
        sel(conics[:, 1]),
        sel(conics[:, 2]),
    )
    extent2 = 2.0 * torch.log(sel(opac) / ALPHA_MIN)
    dy = y.double() + 0.5 - my
    disc = (B * B - A * C) * dy * dy + A * extent2
    half = torch.sqrt(disc.clamp_min(0.0)) / A
    centre = mx - B * dy / A - 0.5
    xlo = torch.ceil(centre - half - SPAN_EPS).clamp(-1.0, 1e9).long()
    xhi = torch.floor(centre + half + SPAN_EPS).clamp(-1.0, 1e9).long()
    bg = b.index_select(0, g)
    xlo = torch.maximum(xlo, bg[:, 0])
    xhi = torch.minimum(xhi, bg[:, 1])
    empty = (disc < 0) | (xhi < xlo)
    xlo = torch.where(empty, 0, xlo)
    xhi = torch.where(empty, -1, xhi)
    # 3. split spans at tile columns; keep the pieces on live tiles
    r, _, col = _enumerate_rects(
        xlo * 0,
        xlo * 0,
        torch.div(xlo, TILE, rounding_mode="floor"),
        torch.div(xhi, TILE, rounding_mode="floor"),
    )
    yr = y.index_select(0, r)
    live = torch.nonzero(
        tile_alive.index_select(0, torch.div(yr, TILE, rounding_mode="floor") * tw + col)
    ).squeeze(1)
    r, col, yr = r.index_select(0, live), col.index_select(0, live), yr.index_select(0, live)
    # 4. pixels of the live pieces
    p, _, px = _enumerate_rects(
        r * 0,
        r * 0,
        torch.maximum(xlo.index_select(0, r), col * TILE),
        torch.minimum(xhi.index_select(0, r), col * TILE + TILE - 1),
    )
    rp = r.index_select(0, p)
    return g.index_select(0, rp) + g0, px, yr.index_select(0, p)


def _segments(keys: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For sorted keys: (segment id of each element, first index, last index of each segment)."""
    n = keys.numel()
    is_start = torch.ones(n, dtype=torch.bool, device=keys.device)
    if n > 1:
        is_start[1:] = keys[1:] != keys[:-1]
    seg = torch.cumsum(is_start, 0) - 1
    first = torch.nonzero(is_start).squeeze(1)
    last = torch.cat([first[1:], torch.tensor([n], device=keys.device)]) - 1
    return seg, first, last


def _pair_geometry(means2d: Tensor, conics: Tensor, gid: Tensor, px: Tensor, py: Tensor):
    """(dx, dy, sigma) of pairs, the same arithmetic as the reference."""
    m = means2d[gid]
    cn = conics[gid]
    dx = (px.to(m.dtype) + 0.5) - m[:, 0]
    dy = (py.to(m.dtype) + 0.5) - m[:, 1]
    sigma = 0.5 * (cn[:, 0] * dx**2 + cn[:, 2] * dy**2) + cn[:, 1] * (dx * dy)
    return dx, dy, sigma, cn


def _forward(means2d, conics, opac, feats, box, width: int, height: int, max_pairs: int):
    """Composite. Returns feature sums [H*W, F], alpha [H*W], log T_final [H*W] (float64), and the
    composited pairs (gid, pix) as int32, sorted by pixel then depth."""
    dtype, device = feats.dtype, feats.device
    tw, th = -(-width // TILE), -(-height // TILE)
    wp = tw * TILE  # padded width: pixel index = y * wp + x
    n_pix = th * TILE * wp
    feat_sum = torch.zeros(n_pix, feats.shape[1], dtype=dtype, device=device)
    acc = torch.zeros(n_pix, dtype=dtype, device=device)
    log_t = torch.zeros(n_pix, dtype=torch.float64, device=device)
    done = torch.ones(th * TILE, wp, dtype=torch.bool, device=device)
    done[:height, :width] = False  # padding pixels count as finished
    done = done.reshape(-1)
    tile_alive = torch.ones(th * tw, dtype=torch.bool, device=device)
    area = ((box[:, 1] - box[:, 0] + 1).clamp_min(0) * (box[:, 3] - box[:, 2] + 1).clamp_min(0)).cumsum(0)
    kept_gid, kept_pix = [], []

    g0, n = 0, box.shape[0]
    while g0 < n:
        # next depth chunk: about max_pairs candidates, given the fraction of tiles still alive
        alive_frac = max(float(tile_alive.float().mean()), 1.0 / 64)
        before = int(area[g0 - 1]) if g0 > 0 else 0
        g1 = int(torch.searchsorted(area, before + max_pairs / alive_frac, right=True))
        g1 = min(max(g1, g0 + 1), n)
        g0_chunk, g0 = g0, g1

        gid, px, py = _candidates(means2d, conics, opac, box, g0_chunk, g1, tile_alive, tw)
        pix = py * wp + px
        live = torch.nonzero(~done.index_select(0, pix)).squeeze(1)
        gid, pix, px, py = gid[live], pix[live], px[live], py[live]
        _, _, sigma, _ = _pair_geometry(means2d, conics, gid, px, py)
        alpha = torch.clamp_max(opac[gid] * torch.exp(-sigma), ALPHA_MAX)
        hit = torch.nonzero((sigma >= 0) & (alpha >= ALPHA_MIN)).squeeze(1)
        if hit.numel() == 0:
            continue
        pix, order = torch.sort(pix[hit], stable=True)  # pixel-major, depth order kept inside a pixel
        hit = hit[order]
        gid, alpha = gid[hit], alpha[hit]

        # transmittance in front of each pair: carried-over T times the segment's exclusive product
        log1m = torch.log1p(-alpha.double())
        cs = torch.cumsum(log1m, 0) - log1m
        seg, first, _ = _segments(pix)
        log_excl = log_t[pix] + (cs - cs[first][seg])
        included = log_excl + log1m > LOG_T_MIN
        done[pix[~included]] = True
        inc = torch.nonzero(included).squeeze(1)
        gid, pix, alpha, log_excl, log1m = gid[inc], pix[inc], alpha[inc], log_excl[inc], log1m[inc]
        log_t.index_add_(0, pix, log1m)
        w = alpha * torch.exp(log_excl).to(dtype)
        feat_sum.index_add_(0, pix, w[:, None] * feats[gid])
        acc.index_add_(0, pix, w)
        kept_gid.append(gid.int())
        kept_pix.append(pix.int())
        tile_alive = ~done.reshape(th, TILE, tw, TILE).all(dim=3).all(dim=1).reshape(-1)
        if not bool(tile_alive.any()):
            break

    gid = torch.cat(kept_gid) if kept_gid else torch.zeros(0, dtype=torch.int32, device=device)
    pix = torch.cat(kept_pix) if kept_pix else torch.zeros(0, dtype=torch.int32, device=device)
    pix, order = torch.sort(pix, stable=True)
    gid = gid[order]

    def crop(t: Tensor) -> Tensor:
        return t.reshape(th * TILE, wp, *t.shape[1:])[:height, :width].reshape(height * width, *t.shape[1:])

    # pixel indices of the kept pairs are re-based to the cropped image
    pix = (torch.div(pix, wp, rounding_mode="floor") * width + pix % wp).int()
    return crop(feat_sum), crop(acc), crop(log_t), gid, pix


def _backward_slice(means2d, conics, opac, feats, gid, pix, width, g_feat, g_acc, log_t_final, grads):
    """Accumulate gradients of one slice of whole pixels of the kept pairs into `grads`."""
    gid, pix = gid.long(), pix.long()
    px, py = pix % width, torch.div(pix, width, rounding_mode="floor")
    dx, dy, sigma, cn = _pair_geometry(means2d, conics, gid, px, py)
    e = torch.exp(-sigma)
    raw = opac[gid] * e
    alpha = torch.clamp_max(raw, ALPHA_MAX)
    log1m = torch.log1p(-alpha.double())
    seg, first, last = _segments(pix)
    cs = torch.cumsum(log1m, 0) - log1m
    t = torch.exp(cs - cs[first][seg]).to(alpha.dtype)  # T in front of the pair, from the pixel's start
    w = alpha * t
    f = feats[gid]
    gf = g_feat[pix]
    gfd = (gf * f).sum(1)  # d loss / d (feature contribution), per unit weight
    cv = torch.cumsum((w * gfd).double(), 0)
    behind = (cv[last][seg] - cv).to(alpha.dtype)  # sum over later pairs of w_i (g . f_i)
    one_m = 1.0 - alpha
    d_alpha = t * gfd + (g_acc[pix] * torch.exp(log_t_final[pix]).to(alpha.dtype) - behind) / one_m
    d_alpha = torch.where(raw < ALPHA_MAX, d_alpha, torch.zeros_like(d_alpha))
    d_sigma = -d_alpha * alpha
    g_means, g_conics, g_opac, g_feats = grads
    g_opac.index_add_(0, gid, d_alpha * e)
    g_feats.index_add_(0, gid, w[:, None] * gf)
    g_means.index_add_(
        0,
        gid,
        torch.stack(
            [-d_sigma * (cn[:, 0] * dx + cn[:, 1] * dy), -d_sigma * (cn[:, 2] * dy + cn[:, 1] * dx)], 1
        ),
    )
    g_conics.index_add_(
        0, gid, torch.stack([0.5 * d_sigma * dx * dx, d_sigma * dx * dy, 0.5 * d_sigma * dy * dy], 1)
    )


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, opac, feats, box, width, height, max_pairs):
        feat_sum, acc, log_t, gid, pix = _forward(means2d, conics, opac, feats, box, width, height, max_pairs)
        ctx.save_for_backward(means2d, conics, opac, feats, gid, pix, log_t)
        ctx.width, ctx.max_pairs = width, max_pairs
        return feat_sum, acc

    @staticmethod
    def backward(ctx, g_feat, g_acc):
        means2d, conics, opac, feats, gid, pix, log_t = ctx.saved_tensors
        grads = tuple(torch.zeros_like(t) for t in (means2d, conics, opac, feats))
        n = gid.numel()
        step = max(1, ctx.max_pairs // 2)
        start = 0
        while start < n:
            stop = min(n, start + step)
            if stop < n:  # end the slice on a pixel boundary
                stop = int(torch.searchsorted(pix, pix[stop], right=False))
                if stop <= start:
                    stop = int(torch.searchsorted(pix, pix[start], right=True))
            sl = slice(start, stop)
            _backward_slice(
                means2d, conics, opac, feats, gid[sl], pix[sl], ctx.width, g_feat, g_acc, log_t, grads
            )
            start = stop
        return (*grads, None, None, None, None)


def rasterize_torch(
    scene: GaussianScene,
    camera: Camera,
    background: Tensor,  # [3]
    sh_degree: int | None = None,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> RenderOutput:
    """Render `scene` from `camera` on the scene's device; differentiable w.r.t. every scene tensor.

    max_pairs: candidate (pixel, Gaussian) pairs handled at once; bounds memory (~100 bytes per pair).
    """
    p = project(scene, camera, sh_degree)
    idx = torch.nonzero(p.valid).squeeze(1)
    order = idx[torch.argsort(p.depths[idx], stable=True)]  # front to back, as the reference
    means2d, conics, opac = p.means2d[order], p.conics[order], p.opacities[order]
    feats = torch.cat([p.colors[order], p.depths[order, None]], dim=1)  # [G, 4] colour and depth
    H, W = camera.height, camera.width
    with torch.no_grad():
        box = _bounding_boxes(means2d, conics, opac, W, H)
    feat_sum, alpha = _Composite.apply(means2d, conics, opac, feats, box, W, H, max_pairs)
    feat_sum, alpha = feat_sum.reshape(H, W, -1), alpha.reshape(H, W)
    image = feat_sum[..., :3] + (1.0 - alpha)[..., None] * background
    depth_sum = feat_sum[..., 3]
    depth = torch.where(alpha > 0, depth_sum / alpha.clamp_min(1e-10), torch.zeros_like(depth_sum))
    return RenderOutput(image=image, alpha=alpha, depth=depth)
