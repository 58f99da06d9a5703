"""The palette finish: after the loop, one smooth global colour map moves the result onto the painting's
palette.

    colour_map = fit_palette_map(render_fn, masks, style_lab, colours0, seed)   # a PaletteMap
    report = palette_finish(job_views, colours, style, config, scene)          # sets colours.finish_map

Why: the learned painter fits per-view paintings that carry colours past the painting's own (its
`style_gain`), and its palette term is weak beside them, so the result's palette can sit far from the
painting's (the colour ratio bound of the acceptance). A GLOBAL map gives two splats of the same colour the
same new colour, so the pattern of strokes and dabs the fit made stays where it is; only the palette moves.

The map: a lattice of RGB offsets (`LATTICE`^3 nodes over the unit cube, trilinear between them: smooth, and
exact for any affine colour change) applied to each splat's DC colour C0 * dc + 0.5:

    map(c) = c + offset(c)                       c [N, 3] in [0, 1]
    c'     = c + k (map(c) - c)                  k = the blend, 0..1

It is fitted with Adam on the sliced Wasserstein-2 distance in CIELAB between the object's pixels in the job's
views and the style image's pixels. The views are rendered through the job's renderer (the colour cache:
a render is linear in the colours), so the fit sees the real pixels, which are blends of many splats: mapping
the splats' colours by a transfer fitted on pixels undershoots (measured, docs/stylization.md).

The blend: `palette_blend`, raised by bisection until the pooled colour-distance ratio of the job's views
(the acceptance metric, `engine.metrics`) is at most `palette_bound`; lowered again while the views'
luminance SSIM is under `palette_ssim_floor` (the structure wins over the bound); with `palette_search`, the
blend above that which the learned style score (`engine.metrics_style`) of the views likes best.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..render.sh import C0 as SH_C0

LATTICE = 6  # nodes per axis of the colour lattice
FIT_STEPS = 80  # Adam steps of the fit
FIT_LR = 0.02  # in colour units (0..1) per step
FIT_DIRECTIONS = 32  # projection directions per step of the sliced distance
FIT_VIEWS = 4  # views rendered per fit step (cycled), so the cost does not grow with the view count
FIT_STYLE_POINTS = 16384  # style pixels in the fit (a strided subsample beyond this)
FIT_DIRECTION_SETS = 8  # fixed direction sets, cycled by step, their style quantiles computed once
BISECTION_STEPS = 7  # blend precision 2^-7
SEARCH_STEPS = 4  # palette_search: candidate blends between the bound's blend and 1


# ---------------------------------------------------------------------------------------------- the map
@dataclass
class PaletteMap:
    offsets: Tensor  # [3, L, L, L] RGB offsets at the lattice nodes, indexed [r, g, b]

    def __call__(self, colours: Tensor, blend: float | Tensor = 1.0) -> Tensor:
        """colours [N, 3] (any range; the lattice is read at the colour clamped into [0, 1]) -> [N, 3]."""
        return colours + blend * lattice_offset(colours, self.offsets)


def lattice_offset(colours: Tensor, offsets: Tensor) -> Tensor:
    """Trilinear read of the lattice `offsets` [3, L, L, L] at `colours` [N, 3] -> [N, 3]."""
    # grid_sample's last grid axis is (x, y, z) = (W, H, D) = (b, g, r)
    grid = (colours.clamp(0, 1) * 2 - 1).flip(-1)[None, :, None, None].to(offsets.dtype)  # [1, N, 1, 1, 3]
    out = F.grid_sample(offsets[None], grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0, :, :, 0, 0].T.to(colours.dtype)  # [N, 3]


def _lab_pixels(images: Sequence[Tensor], masks: Sequence[Tensor], threshold: float = 0.5) -> Tensor:
    from ..metrics.colour import object_pixels_lab

    return torch.cat([object_pixels_lab(i, m, threshold) for i, m in zip(images, masks, strict=True)])


def fit_palette_map(
    render_fn: Callable[[Tensor, Sequence[int]], list[Tensor]],  # (colours [N, 3], view ids) -> [1,3,H,W]s
    masks: Sequence[Tensor],  # per view [1, 1, H, W], the original alpha
    style_lab: Tensor,  # [P, 3] CIELAB pixels of the style image (float64)
    colours: Tensor,  # [N, 3] the splats' current colours
    seed: int = 0,
    steps: int = FIT_STEPS,
) -> PaletteMap:
    """The lattice that brings the rendered object pixels onto the style's palette (sliced W2 in CIELAB)."""
    from ..guidance.weightfree import _resample

    gen = torch.Generator().manual_seed(seed)
    style = style_lab.double()[:: max(1, style_lab.shape[0] // FIT_STYLE_POINTS)]
    dir_sets = []  # (directions [3, K], the style's sorted projections [K, P])
    for _ in range(FIT_DIRECTION_SETS):
        dirs = torch.randn(3, FIT_DIRECTIONS, generator=gen, dtype=torch.float64)
        dirs = dirs / dirs.norm(dim=0, keepdim=True)
        dir_sets.append((dirs, torch.sort(style @ dirs, dim=0).values.T.contiguous()))
    offsets = torch.zeros(3, LATTICE, LATTICE, LATTICE, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([offsets], lr=FIT_LR)
    base = colours.detach()
    n_views = len(masks)
    for step in range(steps):
        ids = [(step * FIT_VIEWS + j) % n_views for j in range(min(FIT_VIEWS, n_views))]
        images = render_fn(base + lattice_offset(base, offsets), ids)
        px = _lab_pixels([i.double() for i in images], [masks[v] for v in ids])  # [n, 3]
        if px.shape[0] < 16:
            continue
        dirs, style_sorted = dir_sets[step % FIT_DIRECTION_SETS]
        ours = torch.sort(px @ dirs, dim=0).values.T  # [K, n]
        theirs = _resample(style_sorted, ours.shape[1])
        loss = ((ours - theirs) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return PaletteMap(offsets.detach())


# ---------------------------------------------------------------------------------------------- the blend
def choose_blend(
    ratio_at: Callable[[float], float],
    ssim_at: Callable[[float], float],
    blend: float,
    bound: float,
    ssim_floor: float,
    score_at: Callable[[float], float] | None = None,
) -> float:
    """The blend k in [0, 1]: `blend`, raised to the smallest k with ratio_at(k) <= bound (bound > 0; 1 when
    none meets it), then lowered while ssim_at(k) < ssim_floor (floor > 0): the structure wins over the
    palette bound (the object stays recognisable; the report says whether the bound was met). Both functions
    are assumed monotone (the ratio and the SSIM fall as k grows); bisection, BISECTION_STEPS halvings. With
    `score_at` (palette_search), the blends from that k up to 1 (SEARCH_STEPS steps) that keep the SSIM
    floor are scored, and the best scoring one is taken (the smallest of equals)."""
    k_min = 0.0  # the smallest blend that meets the bound
    if bound > 0 and ratio_at(0.0) > bound:
        lo, hi = 0.0, 1.0
        if ratio_at(hi) > bound:
            lo = hi  # the whole map is the closest it gets
        for _ in range(BISECTION_STEPS if lo < hi else 0):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if ratio_at(mid) > bound else (lo, mid)
        k_min = hi
    k = max(float(blend), k_min)
    if ssim_floor > 0 and k > 0 and ssim_at(k) < ssim_floor:
        lo, hi = 0.0, k  # the map only lowers the SSIM: k = 0 keeps the result as the loop left it
        for _ in range(BISECTION_STEPS):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if ssim_at(mid) >= ssim_floor else (lo, mid)
        k = lo
    if score_at is not None and k < 1:
        above = [k + (1 - k) * i / SEARCH_STEPS for i in range(1, SEARCH_STEPS + 1)]
        keep = [c for c in above if ssim_floor <= 0 or ssim_at(c) >= ssim_floor]
        k = max([k, *keep], key=score_at)
    return k


def dc_to_rgb(dc: Tensor) -> Tensor:  # [N, 1, 3] or [N, 3] SH DC -> RGB
    return SH_C0 * dc + 0.5


def rgb_to_dc(rgb: Tensor) -> Tensor:
    return (rgb - 0.5) / SH_C0


# ---------------------------------------------------------------------------------------------- the job
def palette_finish(views, colours, style, config, scene) -> dict | None:
    """Fit the map on the job's views (views.PreparedViews), choose the blend and set it on `colours`
    (ColourParams.finish_map, which final_sh applies). None when the config asks for no finish; else what it
    did, for report.json "palette_finish". The colours themselves are not changed."""
    if config.palette_blend <= 0 and config.palette_bound <= 0 and not config.palette_search:
        return None
    from ..metrics.colour import style_pixels_lab

    style_lab = style_pixels_lab(style)
    base = dc_to_rgb(colours.free_dc().detach()[:, 0])  # [N, 3]

    def render_fn(rgb: Tensor, ids: Sequence[int]) -> list[Tensor]:
        sh = colours.sh_from_free(rgb_to_dc(rgb)[:, None])

        def full() -> Tensor:
            return colours.sh_from_free(rgb_to_dc(rgb)[:, None], all_bands=True)

        return [views.render(v, sh, scene, config.render_backend, full) for v in ids]

    at = _Measures(views, render_fn, base, style_lab)
    out = {"ratio_before": round(at.ratio(0.0), 4), "ssim_before": round(at.ssim(0.0), 4), "fitted": False}
    if config.palette_blend <= 0 and not config.palette_search and at.ratio(0.0) <= config.palette_bound:
        return {**out, "blend": 0.0, "ratio_after": out["ratio_before"], "ssim_after": out["ssim_before"]}
    at.lattice = fit_palette_map(render_fn, views.masks, style_lab, base, seed=config.seed)
    at.scorer = _style_scorer(style, config, out) if config.palette_search else None
    k = choose_blend(
        at.ratio,
        at.ssim,
        config.palette_blend,
        config.palette_bound,
        config.palette_ssim_floor,
        at.score if at.scorer is not None else None,
    )
    if k > 0:
        lattice = at.lattice

        def finish_map(free: Tensor) -> Tensor:  # free DC [N, 1, 3] -> DC
            return rgb_to_dc(lattice(dc_to_rgb(free[:, 0]), k))[:, None]

        colours.finish_map = finish_map
    if at.scorer is not None:
        out["style_score_before"], out["style_score_after"] = round(at.score(0.0), 4), round(at.score(k), 4)
    if config.palette_bound > 0:
        out["bound_met"] = at.ratio(k) <= config.palette_bound
    return {
        **out,
        "fitted": True,
        "blend": round(k, 4),
        "ratio_after": round(at.ratio(k), 4),
        "ssim_after": round(at.ssim(k), 4),
    }


class _Measures:
    """The views' colour ratio, luminance SSIM and style score at a blend k, each computed once per k (the
    renders of the last k asked are kept for the other measures of that k)."""

    def __init__(self, views, render_fn, base: Tensor, style_lab: Tensor):
        from ..metrics.colour import sorted_distance, sorted_projections

        self.views, self.render_fn, self.base = views, render_fn, base
        self.lattice: PaletteMap | None = None
        self.scorer = None
        self.style_sorted = sorted_projections(style_lab)  # once: every ratio compares against it
        pixels = _lab_pixels(views.originals, views.masks)
        self.d0 = sorted_distance(sorted_projections(pixels), self.style_sorted)
        self.values: dict[tuple[str, float], float] = {}
        self.last: tuple[float, list[Tensor]] | None = None

    def images(self, k: float) -> list[Tensor]:
        if self.last is None or self.last[0] != k:
            with torch.no_grad():
                rgb = self.base if self.lattice is None or k == 0 else self.lattice(self.base, k)
                self.last = (k, [i.double().cpu() for i in self.render_fn(rgb, range(len(self.views.masks)))])
        return self.last[1]

    def _value(self, name: str, k: float, compute) -> float:
        if (name, k) not in self.values:
            self.values[(name, k)] = float(compute(self.images(k)))
        return self.values[(name, k)]

    def ratio(self, k: float) -> float:
        from ..metrics.colour import sorted_distance, sorted_projections

        def compute(images):
            pixels = _lab_pixels(images, [m.cpu() for m in self.views.masks])
            return sorted_distance(sorted_projections(pixels), self.style_sorted) / self.d0

        return self._value("ratio", k, compute)

    def ssim(self, k: float) -> float:
        from ..metrics.colour import luminance_ssim_sums

        def compute(images):
            total = count = 0
            for o, i, m in zip(self.views.originals, images, self.views.masks, strict=True):
                s, n = luminance_ssim_sums(o.double().cpu(), i, m.cpu())
                total, count = total + s, count + n
            return total / max(count, 1)

        return self._value("ssim", k, compute)

    def score(self, k: float) -> float:
        return self._value("score", k, lambda images: self.scorer(images, self.views.masks))


def _style_scorer(style, config, out: dict):
    """(images, masks) -> the learned style score (engine.metrics_style) of the views, or None with a note
    in `out` when the Magenta networks are not installed."""
    from ..guidance.model_common import style_to_tensor
    from ..metrics_style import style_score
    from ..models.loading import ModelMissingError

    try:
        from ..models.magenta import load_magenta

        nets = load_magenta(config.device)
    except (ModelMissingError, ImportError) as e:
        out["note"] = f"palette_search skipped (no style network): {e}"
        return None
    painting = style_to_tensor(style.copy(), config.device)[0]

    def score(images, masks) -> float:  # view by view: views may differ in size
        total = sum(
            style_score(i.float(), m.float(), painting, nets=nets) for i, m in zip(images, masks, strict=True)
        )
        return total / len(images)

    return score
