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

It is fitted with Adam on the sliced Wasserstein-2 distance in CIELAB between the object's pixels in the job's
views and the style image's pixels. The views are rendered through the job's renderer (the colour cache:
a render is linear in the colours), so the fit sees the real pixels, which are blends of many splats: mapping
the splats' colours by a transfer fitted on pixels undershoots (measured, docs/stylization.md).

The blend, in CIELAB, with two weights: k for the colour (a*, b*) and kL for the lightness, which comes from a
monotone curve fitted quantile to quantile onto the lightness the lattice gives the rendered object (its
tones without reordering them, which costs less structure; the lattice's own lightness where the blends
with the curve miss the bound and those with the lattice's get closer):

    lab(c') = lab(c) + (kL, k, k) * (lab_map(c) - lab(c))      lab_map = (curve(L), a*, b* of map(c))

Only the lightness changes the luminance SSIM, so the structure floor limits kL alone and the colour can
still go on to the palette (docs/stylization.md: the pairs where a single blend stopped short).

Choosing the blends (`choose_blend`): `palette_blend`, raised by bisection until the pooled colour-distance
ratio of the job's views (the acceptance metric, `engine.metrics`) is at most `palette_bound`; kL lowered
while the views' luminance SSIM is under `palette_ssim_floor` (the structure wins over the bound), and k
raised again to the bound; with `palette_search`, the pair above that which the learned style score
(`engine.metrics_style`) of the views likes best.
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
LIGHTNESS_QUANTILES = 257  # knots of the lightness curve


# ---------------------------------------------------------------------------------------------- the map
@dataclass
class PaletteMap:
    offsets: Tensor  # [3, L, L, L] RGB offsets at the lattice nodes, indexed [r, g, b]
    lightness: tuple[Tensor, Tensor] | None = None  # (knots [Q], values [Q]) CIELAB L -> L, monotone

    def __call__(self, colours: Tensor, blend: float = 1.0, lightness: float | None = None) -> Tensor:
        """colours [N, 3] (any range; the lattice is read at the colour clamped into [0, 1]) -> [N, 3].
        `lightness` None: c + blend (map(c) - c) in RGB. Else the blend is taken in CIELAB: a* and b* move
        by `blend` towards the lattice's, L by `lightness` towards the lightness curve's (the lattice's L
        without a curve); the result clipped into [0, 1]."""
        if lightness is None:
            return colours + blend * lattice_offset(colours, self.offsets)
        from ..guidance.weightfree import lab_to_srgb, srgb_to_lab

        lab0 = srgb_to_lab(colours)
        lab1 = srgb_to_lab(colours + lattice_offset(colours, self.offsets))
        if self.lightness is not None:
            knots, values = (t.to(device=lab0.device, dtype=lab0.dtype) for t in self.lightness)
            lab1 = torch.cat([_interp(lab0[:, :1], knots, values), lab1[:, 1:]], dim=1)
        weights = lab0.new_tensor([float(lightness), float(blend), float(blend)])
        return lab_to_srgb(lab0 + weights * (lab1 - lab0))


def _interp(x: Tensor, knots: Tensor, values: Tensor) -> Tensor:
    """Piecewise-linear y(x) through (knots [Q] ascending, values [Q]), constant beyond the ends."""
    i = torch.searchsorted(knots.contiguous(), x.contiguous()).clamp(1, knots.numel() - 1)
    x0, x1, y0, y1 = knots[i - 1], knots[i], values[i - 1], values[i]
    return y0 + ((x - x0) / (x1 - x0).clamp_min(1e-9)).clamp(0, 1) * (y1 - y0)


def lattice_offset(colours: Tensor, offsets: Tensor) -> Tensor:
    """Trilinear read of the lattice `offsets` [3, L, L, L] at `colours` [N, 3] -> [N, 3]."""
    offsets = offsets.to(colours.device)  # the map is fitted on the CPU; it reads colours anywhere
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


def fit_lightness_curve(
    render_fn: Callable[[Tensor, Sequence[int]], list[Tensor]],
    masks: Sequence[Tensor],
    colours: Tensor,  # [N, 3]
    colour_map: PaletteMap,
    quantiles: int = LIGHTNESS_QUANTILES,
) -> tuple[Tensor, Tensor]:
    """The monotone curve that takes the rendered object's CIELAB lightness distribution onto the one the
    lattice gives it (quantile to quantile): the lattice's tones, without its reordering of them."""
    ids = range(len(masks))
    with torch.no_grad():
        before = _lab_pixels([i.double() for i in render_fn(colours, ids)], masks)[:, 0]
        after = _lab_pixels([i.double() for i in render_fn(colour_map(colours), ids)], masks)[:, 0]
    return _quantiles(before, quantiles), _quantiles(after, quantiles)


def _quantiles(x: Tensor, count: int) -> Tensor:  # [n] -> [count] from the minimum to the maximum
    at = torch.linspace(0, x.numel() - 1, count, dtype=torch.float64).round().long()
    return torch.sort(x).values[at]


# ---------------------------------------------------------------------------------------------- the blend
def choose_blend(
    ratio_at: Callable[[float, float], float],
    ssim_at: Callable[[float, float], float],
    blend: float,
    bound: float,
    ssim_floor: float,
    score_at: Callable[[float, float], float] | None = None,
) -> tuple[float, float]:
    """The blends (k of the colour, kL of the lightness), each in [0, 1]; the functions take (k, kL).

    1. k = kL = `blend`, raised to the smallest blend with ratio_at <= bound (bound > 0; 1 when none does).
    2. While ssim_at < ssim_floor (floor > 0), kL is lowered to the floor, found with the whole colour (k = 1)
       so that any k keeps it (k too when the colour alone is under it): the structure wins over the palette
       bound, and mostly the lightness changes the luminance SSIM (the object stays recognisable; the
       report says whether the bound was met).
    3. With kL held there, k is raised again to the smallest that meets the bound.
    4. With `score_at` (palette_search): k from there up to 1 (SEARCH_STEPS steps), kL following it up to
       the floor, and the best scoring pair is taken (the smallest of equals).
    The functions are assumed monotone (the ratio and the SSIM fall as the blends grow); bisection,
    BISECTION_STEPS halvings."""

    def holds(k: float, kl: float) -> bool:
        return ssim_floor <= 0 or ssim_at(k, kl) >= ssim_floor

    def meets(k: float, kl: float) -> bool:
        return bound <= 0 or ratio_at(k, kl) <= bound

    k = max(float(blend), _smallest(lambda x: meets(x, x), 0.0, 1.0))
    kl = k
    if k > 0 and not holds(k, kl):
        if holds(1.0, 0.0):  # the lightness down to the floor (with the whole colour: any k keeps it)
            kl = _largest(lambda x: holds(1.0, x), 0.0, k)
            k = _smallest(lambda x: meets(x, kl), k, 1.0)
        else:  # the colour alone is under the floor: both down
            k, kl = _largest(lambda x: holds(x, 0.0), 0.0, k), 0.0
    if score_at is not None and k < 1:
        pairs, follow = [(k, kl)], kl == k
        for c in (k + (1 - k) * i / SEARCH_STEPS for i in range(1, SEARCH_STEPS + 1)):
            if follow and holds(c, c):  # the lightness follows the colour until the floor stops it ...
                kl = c
            elif follow:  # ... there: up to the floor (with the whole colour, so it holds for every k)
                follow, kl = False, _largest(lambda x: holds(1.0, x), kl, c)
            if holds(c, kl):
                pairs.append((c, kl))
        k, kl = max(pairs, key=lambda p: score_at(*p))
    return k, kl


def _smallest(ok: Callable[[float], bool], lo: float, hi: float) -> float:
    """The smallest x in [lo, hi] with ok(x) (hi when none), ok monotone (False then True)."""
    if ok(lo):
        return lo
    if not ok(hi):
        return hi
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def _largest(ok: Callable[[float], bool], lo: float, hi: float) -> float:
    """The largest x in [lo, hi] with ok(x) (lo when none is found), ok monotone (True then False)."""
    if ok(hi):
        return hi
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


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
    # the map, its fit and the measures live on the CPU (small tensors, one code path); only the renders
    # run on the job's device, so the colours go there and the images come back
    free = colours.free_dc().detach()  # [N, 1, 3] on the job's device
    base = dc_to_rgb(free[:, 0]).cpu()  # [N, 3]
    masks = [m.cpu() for m in views.masks]

    def render_fn(rgb: Tensor, ids: Sequence[int]) -> list[Tensor]:
        dc = rgb_to_dc(rgb.to(free.device))[:, None]
        sh = colours.sh_from_free(dc)

        def full() -> Tensor:
            return colours.sh_from_free(dc, all_bands=True)

        return [views.render(v, sh, scene, config.render_backend, full).cpu() for v in ids]

    at = _Measures(render_fn, base, style_lab, [o.cpu() for o in views.originals], masks)
    out = {"ratio_before": round(at.ratio(0, 0), 4), "ssim_before": round(at.ssim(0, 0), 4), "fitted": False}
    if config.palette_blend <= 0 and not config.palette_search and at.ratio(0, 0) <= config.palette_bound:
        return {**out, "blend": 0.0, "ratio_after": out["ratio_before"], "ssim_after": out["ssim_before"]}
    lattice = fit_palette_map(render_fn, masks, style_lab, base, seed=config.seed)
    lattice.lightness = fit_lightness_curve(render_fn, masks, base, lattice)
    at.lattice = lattice
    at.scorer = _style_scorer(style, config, out) if config.palette_search else None

    def blends() -> tuple[float, float]:
        scorer = at.score if at.scorer is not None else None
        floor = config.palette_ssim_floor
        return choose_blend(at.ratio, at.ssim, config.palette_blend, config.palette_bound, floor, scorer)

    k, kl = blends()
    out["lightness"] = "curve"
    if config.palette_bound > 0 and at.ratio(k, kl) > config.palette_bound:
        # the curve keeps the tones' order, so it cannot couple tone to colour (dark blues, light creams):
        # where it misses the bound, the blends again with the lattice's own lightness; the closer one wins
        curve, first = lattice.lightness, (k, kl, at.ratio(k, kl))
        lattice.lightness = None
        at.forget()
        k, kl = blends()
        if at.ratio(k, kl) < first[2]:
            out["lightness"] = "lattice"
        else:
            lattice.lightness, (k, kl) = curve, first[:2]
            at.forget()
    if k > 0 or kl > 0:

        def finish_map(free: Tensor) -> Tensor:  # free DC [N, 1, 3] -> DC
            return rgb_to_dc(lattice(dc_to_rgb(free[:, 0]), k, kl))[:, None]

        colours.finish_map = finish_map
    if at.scorer is not None:
        out["style_score_before"] = round(at.score(0.0, 0.0), 4)
        out["style_score_after"] = round(at.score(k, kl), 4)
    if config.palette_bound > 0:
        out["bound_met"] = at.ratio(k, kl) <= config.palette_bound
    return {
        **out,
        "fitted": True,
        "blend": round(k, 4),
        "lightness_blend": round(kl, 4),
        "ratio_after": round(at.ratio(k, kl), 4),
        "ssim_after": round(at.ssim(k, kl), 4),
    }


class _Measures:
    """The views' colour ratio, luminance SSIM and style score at blends (k, kL), each computed once per
    pair (the renders of the last pair asked are kept for the other measures of that pair)."""

    def __init__(
        self, render_fn, base: Tensor, style_lab: Tensor, originals: list[Tensor], masks: list[Tensor]
    ):
        """Every tensor given is on the CPU: base [N, 3], style_lab [P, 3], originals and masks per view."""
        from ..metrics.colour import sorted_distance, sorted_projections

        self.render_fn, self.base, self.originals, self.masks = render_fn, base, originals, masks
        self.lattice: PaletteMap | None = None
        self.scorer = None
        self.style_sorted = sorted_projections(style_lab)  # once: every ratio compares against it
        pixels = _lab_pixels(originals, masks)
        self.d0 = sorted_distance(sorted_projections(pixels), self.style_sorted)
        self.values: dict[tuple[str, float, float], float] = {}
        self.last: tuple[tuple[float, float], list[Tensor]] | None = None

    def images(self, k: float, kl: float) -> list[Tensor]:
        if self.last is None or self.last[0] != (k, kl):
            with torch.no_grad():
                blended = self.lattice is not None and (k > 0 or kl > 0)
                rgb = self.lattice(self.base, k, kl) if blended else self.base
                images = [i.double().cpu() for i in self.render_fn(rgb, range(len(self.masks)))]
            self.last = ((k, kl), images)
        return self.last[1]

    def forget(self) -> None:
        """Drop what was measured (the map changed); the loop's own result, (0, 0), stays."""
        self.values = {key: v for key, v in self.values.items() if key[1:] == (0, 0)}
        if self.last is not None and self.last[0] != (0, 0):
            self.last = None

    def _value(self, name: str, k: float, kl: float, compute) -> float:
        if (name, k, kl) not in self.values:
            self.values[(name, k, kl)] = float(compute(self.images(k, kl)))
        return self.values[(name, k, kl)]

    def ratio(self, k: float, kl: float) -> float:
        from ..metrics.colour import sorted_distance, sorted_projections

        def compute(images):
            pixels = _lab_pixels(images, self.masks)
            return sorted_distance(sorted_projections(pixels), self.style_sorted) / self.d0

        return self._value("ratio", k, kl, compute)

    def ssim(self, k: float, kl: float) -> float:
        from ..metrics.colour import luminance_ssim_sums

        def compute(images):
            total = count = 0
            for o, i, m in zip(self.originals, images, self.masks, strict=True):
                s, n = luminance_ssim_sums(o.double(), i, m)
                total, count = total + s, count + n
            return total / max(count, 1)

        return self._value("ssim", k, kl, compute)

    def score(self, k: float, kl: float) -> float:
        return self._value("score", k, kl, lambda images: self.scorer(images, self.masks))


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
        dev = painting.device
        total = sum(
            style_score(i.float().to(dev), m.float().to(dev), painting, nets=nets)
            for i, m in zip(images, masks, strict=True)
        )
        return total / len(images)

    return score
