"""Fast pure-PyTorch rasterizer with a hand-written backward.

    rasterize_torch(scene, camera, background [3], sh_degree=None) -> RenderOutput

Same conventions as the dense reference (`reference.py`, gsplat "classic"); see docs/rendering.md.

Forward (no autograd graph), Gaussians sorted front to back and taken in depth chunks:
  1. candidates: each Gaussian's rows, with the exact x-span of its alpha >= 1/255 ellipse on each row, cut
     at 16-pixel strips; Gaussians, rows and strips that cover only finished pixels are dropped, then the
     pixels of the rest (again without finished pixels) get their alpha; pairs with alpha < 1/255 go;
  2. a stable sort of a chunk's pairs by pixel gives, per pixel, its Gaussians in depth order;
  3. per-pixel transmittance carries over from chunk to chunk; inside a chunk it is a segmented cumulative
     sum of log(1 - alpha) (float64). A pixel finishes at the first Gaussian that would bring it to <= T_MIN.
  4. the weights w = alpha T are scattered into colour/depth sums and alpha; the composited pairs are kept
     (index, pixel, alpha, T: 24 bytes per pair in float32) for the backward pass.
Backward: chunk by chunk, back to front, in slices of whole pixels: the "light behind" each pair is a
segmented suffix sum plus a per-pixel sum over the chunks behind; gradients of the screen-space quantities
(means2d, conics, opacities, colours, depths) are scattered back; autograd does the projection.
Memory: about max_pairs candidate pairs at a time (~100 bytes each) plus 24 bytes per composited pair.

`composited_pairs` returns one camera's (pixel, Gaussian, weight) pairs: the stylization colour cache
(engine/stylize/colorcache.py) re-renders new SH coefficients from them with one sparse product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..cameras.camera import Camera
from ..scene.gaussians import GaussianScene
from .projection import ALPHA_MAX, ALPHA_MIN, T_MIN, Projected, project
from .types import RenderOutput

LOG_T_MIN = math.log(T_MIN)
TILE = 16
SPAN_EPS = 1e-3  # pixels; row spans are widened by this against rounding
DEFAULT_MAX_PAIRS = 1_000_000  # candidate pairs handled at once: bounds the working memory
BACKWARD_SLICE_DIV = 4  # the backward keeps ~4x more values per pair than the forward: smaller slices


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


def _expand_ranges(lo: Tensor, hi: Tensor, *carry: Tensor) -> tuple[Tensor, ...]:
    """The integers of the inclusive ranges [lo, hi], range after range, and each `carry` tensor's value of
    the range repeated alongside."""
    counts = (hi - lo + 1).clamp_min(0)
    total = int(counts.sum())
    idx = torch.repeat_interleave(counts, output_size=total)  # range of each output
    starts = torch.cumsum(counts, 0) - counts
    values = torch.arange(total, device=lo.device) + (lo - starts).index_select(0, idx)
    return values, *(c.index_select(0, idx) for c in carry)


def _span_table(means2d: Tensor, conics: Tensor, opac: Tensor) -> Tensor:
    """Per Gaussian [G, 5] float64 (my, x centre at my, dx/dy slope, q2, r2) of the ellipse rows: on the row
    through pixel centres at y + 0.5 = my + dy, the alpha >= ALPHA_MIN span of x + 0.5 is
    centre + slope dy +- sqrt(q2 dy^2 + r2)."""
    mx, my = means2d[:, 0].double(), means2d[:, 1].double()
    A, B, C = conics[:, 0].double(), conics[:, 1].double(), conics[:, 2].double()
    extent2 = 2.0 * torch.log(opac.double() / ALPHA_MIN)  # d^T conic d <= extent2
    return torch.stack([my, mx - 0.5, -B / A, (B * B - A * C) / (A * A), extent2 / A], 1)


def _chunk_pairs(geo, span, box, g0: int, g1: int, strip_alive: Tensor, done: Tensor, frame: _Frame):
    """The pairs (gid, pix, alpha) of Gaussians [g0, g1) with alpha >= ALPHA_MIN on pixels not yet finished,
    Gaussian-major. Only the pixels of each row's exact span of the alpha >= ALPHA_MIN ellipse, on strips
    (TILE pixels of a row) not yet finished, are tried."""
    tw, wp = frame.tw, frame.wp
    device = box.device
    # 0. Gaussians whose box still has a live tile (summed-area table of live tiles)
    b = box[g0:g1]
    tile_alive = strip_alive.reshape(frame.th, TILE, tw).any(dim=1)
    sat = torch.zeros(frame.th + 1, tw + 1, dtype=torch.long, device=device)
    sat[1:, 1:] = tile_alive.long().cumsum(0).cumsum(1)
    sat = sat.reshape(-1)
    tb = torch.div(b, TILE, rounding_mode="floor")  # empty boxes may lie off the grid: clamp, masked below
    tx0, tx1 = tb[:, 0].clamp(0, tw - 1), tb[:, 1].clamp(0, tw - 1)
    ty0, ty1 = tb[:, 2].clamp(0, frame.th - 1), tb[:, 3].clamp(0, frame.th - 1)
    n_live = (
        sat.index_select(0, (ty1 + 1) * (tw + 1) + tx1 + 1)
        - sat.index_select(0, ty0 * (tw + 1) + tx1 + 1)
        - sat.index_select(0, (ty1 + 1) * (tw + 1) + tx0)
        + sat.index_select(0, ty0 * (tw + 1) + tx0)
    )
    keep = torch.nonzero((n_live > 0) & (b[:, 1] >= b[:, 0]) & (b[:, 3] >= b[:, 2])).squeeze(1)
    b = b.index_select(0, keep)
    # 1. (Gaussian, row) over the bounding box rows
    y, g = _expand_ranges(b[:, 2], b[:, 3], keep)
    # 2. the ellipse's x-span on the row (float64; the alpha test later is exact, this only has to cover it)
    my, cx, slope, q2, r2 = span[g0:g1].index_select(0, g).unbind(1)
    dy = y.double() + 0.5 - my
    disc = q2 * dy * dy + r2
    half = torch.sqrt(disc.clamp_min(0.0))
    centre = cx + slope * dy
    bg = box[g0:g1].index_select(0, g)
    xlo = torch.maximum(torch.ceil(centre - half - SPAN_EPS).clamp(-1.0, 1e9).long(), bg[:, 0])
    xhi = torch.minimum(torch.floor(centre + half + SPAN_EPS).clamp(-1.0, 1e9).long(), bg[:, 1])
    c0 = torch.div(xlo, TILE, rounding_mode="floor")
    c1 = torch.div(xhi, TILE, rounding_mode="floor")
    # rows whose span is empty or lies on finished strips only are dropped (prefix counts of live strips)
    row_live = torch.zeros(frame.th * TILE, tw + 1, dtype=torch.long, device=device)
    row_live[:, 1:] = strip_alive.reshape(-1, tw).long().cumsum(1)
    row_live = row_live.reshape(-1)
    ok = (disc >= 0) & (xhi >= xlo)
    c0s, c1s = torch.where(ok, c0, 0), torch.where(ok, c1, 0)
    n_live = row_live.index_select(0, y * (tw + 1) + c1s + 1) - row_live.index_select(0, y * (tw + 1) + c0s)
    rows = torch.nonzero(ok & (n_live > 0)).squeeze(1)
    y, g, xlo, xhi, c0, c1 = (t.index_select(0, rows) for t in (y, g, xlo, xhi, c0, c1))
    # 3. split spans at tile columns; keep the pieces on live strips (one row of a tile)
    col, r = _expand_ranges(c0, c1, torch.arange(len(xlo), device=device))
    yr = y.index_select(0, r)
    live = torch.nonzero(strip_alive.index_select(0, yr * tw + col)).squeeze(1)
    r, col, yr = r.index_select(0, live), col.index_select(0, live), yr.index_select(0, live)
    # 4. per piece: pixel index and dx of its first pixel, and sigma = (a2 dx + b1) dx + c0 along the row
    gp = g.index_select(0, r) + g0
    lo = torch.maximum(xlo.index_select(0, r), col * TILE)
    hi = torch.minimum(xhi.index_select(0, r), col * TILE + (TILE - 1))
    mx, my, A, B, C, o = geo.index_select(0, gp).unbind(1)
    dy = (yr.to(geo.dtype) + 0.5) - my
    coef = torch.stack([(lo.to(geo.dtype) + 0.5) - mx, 0.5 * A, B * dy, 0.5 * C * dy * dy, o], 1)
    # 5. pixels of the pieces that are not finished, and their alpha
    counts = (hi - lo + 1).clamp_min(0)
    total = int(counts.sum())
    idx = torch.repeat_interleave(counts, output_size=total)
    first = yr * wp + lo - (torch.cumsum(counts, 0) - counts)  # pix = first[idx] + position in the output
    pix = torch.arange(total, device=device) + first.index_select(0, idx)
    live = torch.nonzero(~done.index_select(0, pix)).squeeze(1)
    idx, pix = idx.index_select(0, live), pix.index_select(0, live)
    x0, a2, b1, c0, o = coef.index_select(0, idx).unbind(1)
    dx = (pix - (yr * wp + lo).index_select(0, idx)).to(geo.dtype) + x0
    sigma = (a2 * dx + b1) * dx + c0
    alpha = torch.clamp_max(o * torch.exp(-sigma), ALPHA_MAX)
    hit = torch.nonzero((sigma >= 0) & (alpha >= ALPHA_MIN)).squeeze(1)
    return gp.index_select(0, idx.index_select(0, hit)), pix.index_select(0, hit), alpha.index_select(0, hit)


def _segments(keys: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For sorted keys: (segment id of each element, first index, last index of each segment)."""
    n = keys.numel()
    is_start = torch.ones(n, dtype=torch.bool, device=keys.device)
    if n > 1:
        torch.ne(keys[1:], keys[:-1], out=is_start[1:])
    seg = torch.cumsum(is_start, 0) - 1
    first = torch.nonzero(is_start).squeeze(1)
    last = torch.cat([first[1:], torch.tensor([n], device=keys.device)]) - 1
    return seg, first, last


@dataclass
class _Frame:
    """Pixel grid padded to whole tiles: pixel index = y * wp + x."""

    width: int
    height: int
    tw: int  # tiles across
    th: int  # tiles down

    @property
    def wp(self) -> int:
        return self.tw * TILE

    @property
    def n_pix(self) -> int:
        return self.th * TILE * self.wp

    @classmethod
    def of(cls, width: int, height: int) -> _Frame:
        return cls(width, height, -(-width // TILE), -(-height // TILE))


def _forward(geo: Tensor, feats: Tensor, box: Tensor, frame: _Frame, max_pairs: int):
    """Composite front to back. Returns (feature sums [n_pix, F], alpha [n_pix], log T_final [n_pix] float64,
    the composited pairs of each depth chunk: (gid, pix, alpha, T in front), sorted by pixel
    and then depth inside a chunk)."""
    dtype, device = feats.dtype, feats.device
    wp, n_pix = frame.wp, frame.n_pix
    feat_sum = torch.zeros(n_pix, feats.shape[1], dtype=dtype, device=device)
    acc = torch.zeros(n_pix, dtype=dtype, device=device)
    log_t = torch.zeros(n_pix, dtype=torch.float64, device=device)
    done = torch.ones(frame.th * TILE, wp, dtype=torch.bool, device=device)
    done[: frame.height, : frame.width] = False  # padding pixels count as finished
    done = done.reshape(-1)
    strip_alive = torch.ones(frame.th * TILE * frame.tw, dtype=torch.bool, device=device)
    area = ((box[:, 1] - box[:, 0] + 1).clamp_min(0) * (box[:, 3] - box[:, 2] + 1).clamp_min(0)).cumsum(0)
    span = _span_table(geo[:, :2], geo[:, 2:5], geo[:, 5])
    kept: list[tuple[Tensor, ...]] = []

    g0, n = 0, box.shape[0]
    while g0 < n:
        # next depth chunk: about max_pairs candidates, given the fraction of strips still alive
        alive_frac = max(float(strip_alive.float().mean()), 1.0 / 64)
        before = int(area[g0 - 1]) if g0 > 0 else 0
        g1 = int(torch.searchsorted(area, before + int(max_pairs / alive_frac), right=True))
        g1 = min(max(g1, g0 + 1), n)
        gid, pix, alpha = _chunk_pairs(geo, span, box, g0, g1, strip_alive, done, frame)
        g0 = g1
        if pix.numel() == 0:
            continue
        # int32 keys sort faster; the stable sort keeps depth order inside a pixel
        pix, order = torch.sort(pix.int(), stable=True)
        pix = pix.long()
        gid, alpha = gid.index_select(0, order), alpha.index_select(0, order)

        # transmittance in front of each pair: carried-over T times the segment's exclusive product
        log1m = torch.log1p(-alpha.double())
        cs = torch.cumsum(log1m, 0) - log1m
        seg, first, _ = _segments(pix)
        log_excl = log_t.index_select(0, pix) + (cs - cs.index_select(0, first).index_select(0, seg))
        included = log_excl + log1m > LOG_T_MIN
        done.index_fill_(0, pix.index_select(0, torch.nonzero(~included).squeeze(1)), True)
        inc = torch.nonzero(included).squeeze(1)
        gid, pix, alpha, log_excl, log1m = (
            t.index_select(0, inc) for t in (gid, pix, alpha, log_excl, log1m)
        )
        log_t.index_add_(0, pix, log1m)
        t = torch.exp(log_excl).to(dtype)
        w = alpha * t
        feat_sum.index_add_(0, pix, w[:, None] * feats.index_select(0, gid))
        acc.index_add_(0, pix, w)
        kept.append((gid, pix, alpha, t))
        strip_alive = ~done.reshape(-1, TILE).all(dim=1)
        if not bool(strip_alive.any()):
            break

    return feat_sum, acc, log_t, kept


def _backward_slice(geo, feats, frame: _Frame, pairs, g_feat, g_acc, t_final, later, grads, geometry: bool):
    """Accumulate the gradients of one slice of a chunk's composited pairs (whole pixels) into `grads`
    ([G, 6] for geo, [G, F] for feats). `later` [n_pix] (float64) holds, per pixel, sum w_i (g . f_i) over
    the pairs of later chunks; this slice's pairs are added to it."""
    gid, pix, alpha, t = pairs
    w = alpha * t
    gf = g_feat.index_select(0, pix)  # [n, F]
    grads[1].index_add_(0, gid, w[:, None] * gf)
    if not geometry:
        return
    gfd = (gf * feats.index_select(0, gid)).sum(1)  # d loss / d weight of each pair (direct part)
    v = (w * gfd).double()
    cv = torch.cumsum(v, 0)
    seg, _, last = _segments(pix)
    behind = cv.index_select(0, last).index_select(0, seg) - cv + later.index_select(0, pix)
    later.index_add_(0, pix, v)
    # d out / d alpha_k = T_k gfd_k - (behind_k - g_acc T_final) / (1 - alpha_k)
    g_t = g_acc.index_select(0, pix) * t_final.index_select(0, pix)
    d_alpha = t * gfd + (g_t - behind.to(alpha.dtype)) / (1.0 - alpha)
    d_alpha = torch.where(alpha < ALPHA_MAX, d_alpha, torch.zeros_like(d_alpha))  # clamped: no gradient
    py = torch.div(pix, frame.wp, rounding_mode="floor")
    mx, my, A, B, C, o = geo.index_select(0, gid).unbind(1)
    dx = ((pix - py * frame.wp).to(geo.dtype) + 0.5) - mx
    dy = (py.to(geo.dtype) + 0.5) - my
    d_sigma = d_alpha * alpha  # = -d loss / d sigma
    upd = torch.stack(
        [
            d_sigma * (A * dx + B * dy),  # d / d mx (sigma's derivative is -(A dx + B dy))
            d_sigma * (C * dy + B * dx),
            -0.5 * d_sigma * dx * dx,  # d / d A
            -d_sigma * dx * dy,
            -0.5 * d_sigma * dy * dy,
            d_alpha * alpha / o,  # d / d opacity (unclamped: alpha = o exp(-sigma))
        ],
        1,
    )
    grads[0].index_add_(0, gid, upd)


class _Composite(torch.autograd.Function):
    """(geo [G, 6] = means2d, conic, opacity; feats [G, F]) -> (feature sums [n_pix, F], alpha [n_pix])
    on the tile-padded pixel grid of `frame`."""

    @staticmethod
    def forward(ctx, geo, feats, box, frame, max_pairs):
        feat_sum, acc, log_t, chunks = _forward(geo, feats, box, frame, max_pairs)
        ctx.save_for_backward(geo, feats, log_t)
        ctx.chunks = chunks  # intermediate tensors only (no inputs/outputs): safe to keep on ctx
        ctx.frame, ctx.max_pairs = frame, max_pairs
        return feat_sum, acc

    @staticmethod
    def backward(ctx, g_feat, g_acc):
        geo, feats, log_t = ctx.saved_tensors
        geometry = ctx.needs_input_grad[0]
        grads = (torch.zeros_like(geo), torch.zeros_like(feats))
        t_final = torch.exp(log_t).to(geo.dtype)
        later = torch.zeros_like(log_t)
        g_feat, g_acc = g_feat.contiguous(), g_acc.contiguous()
        step = max(1, ctx.max_pairs // BACKWARD_SLICE_DIV)
        for pairs in reversed(ctx.chunks):  # back to front: `later` then holds the light from behind
            pix, n, start = pairs[1], pairs[1].numel(), 0
            while start < n:  # slices of whole pixels; no pixel is in two slices of a chunk
                stop = min(n, start + step)
                if stop < n:
                    stop = int(torch.searchsorted(pix, pix[stop], right=False))
                    if stop <= start:
                        stop = int(torch.searchsorted(pix, pix[start], right=True))
                sl = [x[start:stop] for x in pairs]
                _backward_slice(geo, feats, ctx.frame, sl, g_feat, g_acc, t_final, later, grads, geometry)
                start = stop
        return grads[0] if geometry else None, grads[1], None, None, None


def _visible_sorted(p: Projected) -> Tensor:
    """Indices of the valid Gaussians, front to back (stable, as the reference)."""
    idx = torch.nonzero(p.valid).squeeze(1)
    return idx[torch.argsort(p.depths[idx], stable=True)]


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
    order = _visible_sorted(p)
    means2d, conics, opac = p.means2d[order], p.conics[order], p.opacities[order]
    geo = torch.cat([means2d, conics, opac[:, None]], dim=1)  # [G, 6]
    feats = torch.cat([p.colors[order], p.depths[order, None]], dim=1)  # [G, 4] colour and depth
    H, W = camera.height, camera.width
    frame = _Frame.of(W, H)
    with torch.no_grad():
        box = _bounding_boxes(means2d, conics, opac, W, H)
    feat_sum, alpha = _Composite.apply(geo, feats, box, frame, max_pairs)
    feat_sum = feat_sum.reshape(frame.th * TILE, frame.wp, -1)[:H, :W]
    alpha = alpha.reshape(frame.th * TILE, frame.wp)[:H, :W]
    image = feat_sum[..., :3] + (1.0 - alpha)[..., None] * background
    depth_sum = feat_sum[..., 3]
    depth = torch.where(alpha > 0, depth_sum / alpha.clamp_min(1e-10), torch.zeros_like(depth_sum))
    return RenderOutput(image=image, alpha=alpha, depth=depth)


@dataclass
class CompositedPairs:
    """The (pixel, Gaussian) pairs a render composites, with their weights: for fixed geometry and camera,
    image[p] = sum over pairs at p of weight * colour[gaussian] + (1 - alpha[p]) * background."""

    pix: Tensor  # [P] long, pixel index y * width + x
    gaussian: Tensor  # [P] long, index into the scene
    weight: Tensor  # [P] alpha T
    alpha: Tensor  # [H, W]
    depth: Tensor  # [H, W] expected depth (0 where alpha is 0)


@torch.no_grad()
def composited_pairs(
    scene: GaussianScene, camera: Camera, max_pairs: int = DEFAULT_MAX_PAIRS
) -> CompositedPairs:
    """The pairs `rasterize_torch` composites for `scene` from `camera` (one forward pass, no autograd)."""
    p = project(scene, camera, 0)
    order = _visible_sorted(p)
    geo = torch.cat([p.means2d[order], p.conics[order], p.opacities[order, None]], dim=1)
    H, W = camera.height, camera.width
    frame = _Frame.of(W, H)
    box = _bounding_boxes(geo[:, :2], geo[:, 2:5], geo[:, 5], W, H)
    depth_sum, acc, _, chunks = _forward(geo, p.depths[order, None], box, frame, max_pairs)
    empty = torch.zeros(0, dtype=torch.long, device=geo.device)
    gid = torch.cat([c[0] for c in chunks]) if chunks else empty
    pix = torch.cat([c[1] for c in chunks]) if chunks else empty
    weight = torch.cat([c[2] * c[3] for c in chunks]) if chunks else geo.new_zeros(0)
    pix = torch.div(pix, frame.wp, rounding_mode="floor") * W + pix % frame.wp  # padded grid -> image
    alpha = acc.reshape(frame.th * TILE, frame.wp)[:H, :W].contiguous()
    depth_sum = depth_sum.reshape(frame.th * TILE, frame.wp)[:H, :W]
    depth = torch.where(alpha > 0, depth_sum / alpha.clamp_min(1e-10), torch.zeros_like(alpha))
    return CompositedPairs(pix, order.index_select(0, gid), weight, alpha, depth)
