"""The weight-free default guidance: no downloaded model, plain PyTorch, a few hundred steps on a CPU.

Three terms on the rendered views (see docs/stylization.md for the measurements behind the choices):

    color     sliced Wasserstein distance between the CIELAB colours of the object's pixels and the style
              image's pixels (the palette)
    texture   sliced Wasserstein distance between the responses of FIXED random convolution filter banks
              (several kernel sizes, ReLU) on the render and on the style image, at several image scales
              (the brush texture: distributions of local patterns, not just their averages)
    content   luminance of the render vs the original render, both blurred a little (the object's shading
              and structure stay; strokes may vary the luminance below the blur scale)

Style statistics are computed once: for every (bank, scale) and every one of a few fixed sets of projection
directions we store the style's sorted projections as a quantile table. A step picks the direction set from
its step number, so the loss needs no RNG state (resuming reproduces it exactly) and costs one conv pass +
a sort of the object's pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Guidance, GuidanceBatch
from .model_common import job_seed, module_config

N_DIRECTION_SETS = 8  # fixed direction sets, cycled by step
N_QUANTILES = 1024  # quantile table resolution for the style distributions
MAX_STYLE_POINTS = 16384  # style pixels used per statistic (a strided subsample beyond this)
MIN_OBJECT_PIXELS = 16  # fewer object pixels than this: the distribution terms are skipped


# ---------------------------------------------------------------------------------------------- colour
@dataclass
class WeightFreeConfig:
    """Settings of the weight-free guidance (`engine/guidance/weightfree.py`); see docs/stylization.md."""

    color_weight: float = 6.0
    """Weight of the sliced Wasserstein distance between CIELAB pixel colours of the object and the style."""
    color_ceiling: float = 0.0
    """0 = off. Otherwise a hinge on the palette, like the acceptance bound: while a view's sliced W2 colour
    distance to the style is above this fraction of its ORIGINAL render's, the squared distance is pushed
    down with `ceiling_weight` (on top of `color_weight`); below it the hinge costs nothing."""
    ceiling_weight: float = 1.0
    """Weight of the palette hinge of `color_ceiling`."""
    color_directions: int = 64
    """Random projection directions per step for the colour distance."""
    texture_weight: float = 1.0
    """Weight of the texture term (sliced Wasserstein of fixed random-filter responses, several scales)."""
    texture_kernels: tuple[int, ...] = (3, 7)
    """Kernel sizes of the fixed random filter banks (one bank per size)."""
    texture_filters: int = 24
    """Filters per bank."""
    texture_scales: int = 3
    """Image pyramid levels the filter banks run on (1 = full resolution only)."""
    texture_directions: int = 32
    """Random projection directions per bank and scale for the texture distance."""
    sample_points: int = 4096
    """Object pixels compared per statistic and step (a seeded random subset when there are more)."""
    direction_sets: int = 8
    """Fixed direction sets (style quantiles precomputed per set); step k uses set k mod this."""
    gram_weight: float = 0.0
    """Weight of the Gram-matrix statistics of the same filter responses (the method.md starting recipe)."""
    style_height: int = 256
    """The style image is resized to this height before its statistics are taken."""
    content_weight: float = 1.0
    """Weight of the luminance structure term against the original render."""
    content_blur: float = 1.0
    """Gaussian blur sigma (pixels) applied to both luminances before the content term: strokes may vary
    the luminance at scales below it without penalty."""
    seed: int = 1234
    """Seed of the fixed random filter banks (independent of the job seed: the statistics are fixed)."""


def srgb_to_lab(rgb: Tensor) -> Tensor:
    """[..., 3, H, W] or [N, 3] sRGB in [0, 1] -> CIELAB (L in [0, 100]), D65. Differentiable."""
    rgb = rgb.clamp(0.0, 1.0)
    lin = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055).clamp_min(1e-8) ** 2.4)
    m = rgb.new_tensor(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    white = rgb.new_tensor([0.95047, 1.0, 1.08883])
    if rgb.ndim == 2:  # [N, 3]
        xyz = (lin @ m.T) / white
    else:  # channels at dim -3
        xyz = torch.einsum("ij,...jhw->...ihw", m, lin) / white[:, None, None]
    eps = 216 / 24389
    kappa = 24389 / 27
    f = torch.where(xyz > eps, xyz.clamp_min(eps) ** (1 / 3), (kappa * xyz + 16) / 116)
    if rgb.ndim == 2:
        fx, fy, fz = f.unbind(-1)
        return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-1)
    fx, fy, fz = f.unbind(-3)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-3)


def lab_to_srgb(lab: Tensor) -> Tensor:
    """[N, 3] CIELAB (D65) -> sRGB, clipped into [0, 1]: the inverse of `srgb_to_lab` inside the gamut."""
    L, a, b = lab.unbind(-1)
    fy = (L + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], dim=-1)
    eps, kappa = 216 / 24389, 24389 / 27
    xyz = torch.where(f**3 > eps, f**3, (116 * f - 16) / kappa)
    xyz = xyz * lab.new_tensor([0.95047, 1.0, 1.08883])
    m_inv = lab.new_tensor(
        [
            [3.2404542, -1.5371385, -0.4985314],
            [-0.9692660, 1.8760108, 0.0415560],
            [0.0556434, -0.2040259, 1.0572252],
        ]
    )
    lin = (xyz @ m_inv.T).clamp(0.0, 1.0)
    return torch.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin.clamp_min(1e-12) ** (1 / 2.4) - 0.055)


def luminance(rgb: Tensor) -> Tensor:
    """[B, 3, H, W] -> [B, 1, H, W] CIELAB L / 100 (perceptual lightness in [0, 1])."""
    return srgb_to_lab(rgb)[:, :1] / 100.0


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of [B, C, H, W] (edge-replicating padding). sigma <= 0: unchanged."""
    if sigma <= 0:
        return x
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(
        F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c
    )


# ---------------------------------------------------------------------------------------------- sliced OT
class SlicedDistribution:
    """The 1D distributions of a point cloud [P, D] along fixed random direction sets, as quantile tables.

    `distance(points, set_index)` is the sliced Wasserstein-2 distance (squared, averaged over directions)
    between `points` [n, D] and the stored distribution, differentiable w.r.t. `points`.
    """

    def __init__(
        self,
        points: Tensor,
        n_dirs: int,
        generator: torch.Generator,
        n_sets: int = N_DIRECTION_SETS,
        n_quantiles: int = N_QUANTILES,
    ):
        points = points.detach()
        if points.shape[0] > MAX_STYLE_POINTS:
            points = points[:: math.ceil(points.shape[0] / MAX_STYLE_POINTS)]
        points = points.contiguous()
        d = points.shape[1]
        dirs = torch.randn(n_sets, d, n_dirs, generator=generator, dtype=torch.float64)
        self.dirs = (dirs / dirs.norm(dim=1, keepdim=True)).to(points.dtype).to(points.device)  # [S, D, K]
        tables = []
        for s in range(n_sets):
            proj = sort_rows((self.dirs[s].T @ points.T).contiguous())  # [K, P]
            tables.append(_resample(proj, n_quantiles))  # [K, Q]
        self.tables = torch.stack(tables)  # [S, K, Q]

    def distance(self, points: Tensor, set_index: int, salt: int = 0) -> Tensor:
        """Sliced W2^2 of `points` [n, D] to the stored distribution with direction set `set_index`. More
        points than the table has quantiles: a random subset of that size (seeded by set_index and salt, so
        a step is reproducible) is compared, which spares resampling the table and sorting every point."""
        s = set_index % self.dirs.shape[0]
        q = self.tables.shape[2]
        if points.shape[0] > q:
            g = torch.Generator().manual_seed(1_000_003 * int(set_index) + int(salt))
            keep = torch.randperm(points.shape[0], generator=g)[:q].to(points.device)
            points = points.index_select(0, keep)
            target = self.tables[s]  # [K, q]
        else:
            target = _resample(self.tables[s], points.shape[0])  # [K, n]
        sorted_proj = sort_rows((self.dirs[s].T @ points.T).contiguous())  # [K, n]
        return ((sorted_proj - target) ** 2).mean()


def sort_rows(x: Tensor) -> Tensor:
    """Each row of [K, n] sorted ascending, differentiable. On CPU numpy's argsort is ~3x faster than
    torch.sort; the values are gathered through the permutation so gradients flow."""
    if x.device.type != "cpu":
        return torch.sort(x, dim=1).values
    idx = torch.from_numpy(np.argsort(x.detach().numpy(), axis=1))
    return torch.gather(x, 1, idx)


def _resample(table: Tensor, n: int) -> Tensor:
    """Sorted samples / quantile table [K, Q] at levels (i + 0.5)/Q -> values at levels (j + 0.5)/n, [K, n]
    (linear interpolation, clamped at the ends)."""
    Q = table.shape[1]
    pos = ((torch.arange(n, dtype=table.dtype, device=table.device) + 0.5) / n) * Q - 0.5
    pos = pos.clamp(0, Q - 1)
    lo = pos.floor().long().clamp(max=Q - 1)
    hi = (lo + 1).clamp(max=Q - 1)
    w = pos - lo.to(pos.dtype)
    return table[:, lo] * (1 - w) + table[:, hi] * w


# ---------------------------------------------------------------------------------------------- filters
def random_filter_banks(kernels: tuple[int, ...], n_filters: int, generator: torch.Generator) -> list[Tensor]:
    """One bank [F, 3, k, k] per kernel size: zero-mean (they see patterns, not flat colour), unit norm."""
    banks = []
    for k in kernels:
        w = torch.randn(n_filters, 3, k, k, generator=generator, dtype=torch.float64)
        w = w - w.mean(dim=(1, 2, 3), keepdim=True)
        w = w / w.flatten(1).norm(dim=1)[:, None, None, None]
        banks.append(w.float())
    return banks


def to_style_tensor(style_image: np.ndarray, height: int, device: torch.device | str) -> Tensor:
    """uint8 [H, W, 3] -> float [1, 3, height, W'] in [0, 1] (aspect kept, antialiased)."""
    arr = np.asarray(style_image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(
            f"style_image must be a uint8 array [H, W, 3], got dtype {arr.dtype} shape {arr.shape}"
        )
    t = torch.from_numpy(np.array(arr, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float() / 255.0
    h, w = t.shape[-2:]
    new_w = max(8, round(w * height / h))
    t = F.interpolate(t, size=(height, new_w), mode="bilinear", antialias=True, align_corners=False)
    return t.clamp(0, 1).to(device)


class WeightFreeGuidance(Guidance):
    """Colour (sliced OT in CIELAB) + texture (sliced OT of random-filter responses) + content terms."""

    name = "weightfree"

    def __init__(self, config, style_image: np.ndarray, device: torch.device | str = "cpu"):
        wf = module_config(config, WeightFreeConfig, "weightfree")  # StylizeConfig, options or dict
        self.cfg = wf
        self.device = torch.device(device)
        g = torch.Generator().manual_seed(int(wf.seed) + 7919 * job_seed(config))
        self.banks = [
            b.to(self.device) for b in random_filter_banks(tuple(wf.texture_kernels), wf.texture_filters, g)
        ]
        style = to_style_tensor(style_image, wf.style_height, self.device)  # [1, 3, h, w]
        self.style = style
        lab = srgb_to_lab(style)[0].reshape(3, -1).T  # [P, 3]
        q = wf.sample_points
        self.color = SlicedDistribution(lab, wf.color_directions, g, wf.direction_sets, q)
        self.texture: list[list[SlicedDistribution]] = []  # [scale][bank]
        self.grams: list[list[Tensor]] = []
        x = style
        for _ in range(max(1, wf.texture_scales)):
            per_bank, per_gram = [], []
            for bank in self.banks:
                feat = self._features(x, bank)[0]  # [F, h, w]
                pts = feat.reshape(feat.shape[0], -1).T  # [P, F]
                per_bank.append(SlicedDistribution(pts, wf.texture_directions, g, wf.direction_sets, q))
                per_gram.append(pts.T @ pts / pts.shape[0])
            self.texture.append(per_bank)
            self.grams.append(per_gram)
            x = F.avg_pool2d(x, 2)

    @staticmethod
    def _features(x: Tensor, bank: Tensor) -> Tensor:
        """[B, 3, H, W] -> [B, F, H, W] ReLU responses (zero padding by replication)."""
        k = bank.shape[-1]
        xp = F.pad(x, (k // 2,) * 4, mode="replicate")
        return F.relu(F.conv2d(xp, bank))

    def __call__(self, batch: GuidanceBatch) -> dict[str, Tensor]:
        cfg = self.cfg
        images, originals, masks = batch.images, batch.originals, batch.masks
        step = batch.info.step
        sel = masks[:, 0] > 0.5  # [B, H, W] object pixels
        terms: dict[str, Tensor] = {}
        enough = int(sel.sum()) >= MIN_OBJECT_PIXELS

        if (cfg.color_weight > 0 or cfg.color_ceiling > 0) and enough:
            lab = srgb_to_lab(images).permute(0, 2, 3, 1)[sel]  # [n, 3]
            dist = self.color.distance(lab, step, salt=1)
            terms["color"] = cfg.color_weight * dist / 100.0
            if cfg.color_ceiling > 0:
                with torch.no_grad():  # the same directions and pixel subset on the original render
                    lab0 = srgb_to_lab(originals).permute(0, 2, 3, 1)[sel]
                    dist0 = self.color.distance(lab0, step, salt=1)
                hinge = F.relu(dist - cfg.color_ceiling**2 * dist0)
                terms["color_ceiling"] = cfg.ceiling_weight * hinge / 100.0

        if (cfg.texture_weight > 0 or cfg.gram_weight > 0) and enough:
            x, m = images, masks
            tex = images.new_zeros(())
            gram = images.new_zeros(())
            n_terms = 0
            for scale in range(len(self.texture)):
                s = m[:, 0] > 0.5
                if int(s.sum()) >= MIN_OBJECT_PIXELS:
                    for b, bank in enumerate(self.banks):
                        feat = self._features(x, bank).permute(0, 2, 3, 1)[s]  # [n, F]
                        if cfg.texture_weight > 0:
                            tex = tex + self.texture[scale][b].distance(feat, step, salt=2 + 16 * scale + b)
                        if cfg.gram_weight > 0:
                            g = feat.T @ feat / feat.shape[0]
                            gram = gram + ((g - self.grams[scale][b]) ** 2).sum()
                        n_terms += 1
                x, m = F.avg_pool2d(x, 2), F.avg_pool2d(m, 2)
            if n_terms:
                if cfg.texture_weight > 0:
                    terms["texture"] = cfg.texture_weight * 100.0 * tex / n_terms
                if cfg.gram_weight > 0:
                    terms["gram"] = cfg.gram_weight * 10.0 * gram / n_terms

        if cfg.content_weight > 0:
            lum = gaussian_blur(luminance(images), cfg.content_blur)
            lum0 = gaussian_blur(luminance(originals), cfg.content_blur)
            w = masks.clamp(0, 1)
            err = ((lum - lum0) ** 2 * w).sum() / w.sum().clamp_min(1.0)
            terms["content"] = cfg.content_weight * 100.0 * err
        if not terms:  # nothing of the object is visible: a zero that still carries a graph
            terms["color"] = images.sum() * 0.0
        return terms
