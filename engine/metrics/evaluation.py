"""Every metric together: `final_metrics` on rendered views (what the stylize loop calls at the end) and
`evaluate_scenes` on two scenes (what `splatbrush evaluate` calls; it renders the views, one at a time)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..cameras.camera import Camera
from ..scene.gaussians import GaussianScene
from .colour import luminance_ssim_sums, object_pixels_lab, sliced_wasserstein, style_pixels_lab
from .consistency import ConsistencyConfig, _view, consistency_errors

log = logging.getLogger(__name__)


@dataclass
class MetricsConfig:
    mask_threshold: float = 0.5
    """Object pixels for the colour distance and SSIM: mask (original alpha) > this."""
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    """Correspondence settings of the multi-view consistency errors."""
    style_score: bool = True
    """The learned Magenta style score (`engine.metrics_style`); skipped with a note when the networks are
    not installed."""
    model_scores: bool = True
    """CLIP / CSD similarities (`engine.metrics.models`) for the models that are on disk."""
    models_dir: str | None = None
    """Local models folder (default: env SPLATBRUSH_MODELS, then the Hugging Face cache)."""
    device: str = "cpu"
    """Where the networks of the learned scores run."""
    style_nets: Any = field(default=None, repr=False)
    """Magenta networks to use instead of `load_magenta()` (tests pass tiny ones)."""
    style_reference: Any = field(default=None, repr=False)
    """What the style score is centred on (`engine.metrics_style.style_score`'s `reference`): None = the
    shipped mean style vector of nine reference paintings, else a [D] vector or a list of paintings."""


def _colour_and_ssim(originals, stylized, masks, style_image, thr: float) -> dict[str, float]:
    style = style_pixels_lab(style_image)
    px0, px1, ssim_sum, ssim_n = [], [], 0.0, 0
    for o, s, m in zip(originals, stylized, masks, strict=True):
        o, s, m = _view(o, 3)[None].cpu(), _view(s, 3)[None].cpu(), _view(m, 2)[None, None].cpu()
        px0.append(object_pixels_lab(o, m, thr))
        px1.append(object_pixels_lab(s, m, thr))
        total, count = luminance_ssim_sums(o, s, m, thr)
        ssim_sum, ssim_n = ssim_sum + total, ssim_n + count
    if ssim_n == 0:
        raise ValueError(f"final_metrics: no view has an object pixel (mask > {thr})")
    d0, d1 = sliced_wasserstein(torch.cat(px0), style), sliced_wasserstein(torch.cat(px1), style)
    return {
        "style_distance_original": d0,
        "style_distance_stylized": d1,
        "style_distance_ratio": d1 / d0 if d0 > 0 else float("nan"),
        "ssim_luminance": ssim_sum / ssim_n,
    }


def _learned_style_scores(originals, stylized, masks, style_image, cfg: MetricsConfig, notes) -> dict:
    from ..guidance.model_common import style_to_tensor
    from ..metrics_style import style_score
    from ..models.loading import ModelMissingError

    nets = cfg.style_nets
    if nets is None:
        try:
            from ..models.magenta import load_magenta

            nets = load_magenta(cfg.device, cfg.models_dir)
        except (ModelMissingError, ImportError) as e:
            notes.append(f"learned style score skipped: {e}")
            return {}
    style = style_to_tensor(np.array(style_image), cfg.device)[0]  # a copy: loaded images are read-only
    out = {}
    for name, views in (("original", originals), ("stylized", stylized)):
        total = 0.0
        for v, m in zip(views, masks, strict=True):  # one view at a time: bounded memory
            im = _view(v, 3)[None].float().to(cfg.device)
            mask = _view(m, 2)[None, None].float().to(cfg.device)
            total += style_score(im, mask, style, cfg.style_reference, nets=nets)
        out[f"style_score_{name}"] = total / len(views)
    return out


def final_metrics(
    original_images: Sequence[Tensor],  # per view [3, H, W] or [1, 3, H, W], in [0, 1]
    stylized_images: Sequence[Tensor],  # the same views of the stylized scene
    masks: Sequence[Tensor],  # per view the original's alpha, [H, W] or [1, 1, H, W]
    depths: Sequence[Tensor] | None,  # per view rendered expected depth [H, W]; None: no consistency
    cameras: Sequence[Camera],
    style_image: np.ndarray,  # uint8 [H, W, 3]
    config: MetricsConfig | None = None,
) -> dict[str, Any]:
    """The stylization metrics of rendered views (report.json "metrics"). Views may differ in size; each is
    read one at a time, so memory is bounded by the views passed plus one view's work. The geometry is
    assumed unchanged (stylization touches SH only): `masks` and `depths` serve both image sets.

    Keys (floats unless said):
      style_distance_original, _stylized, _ratio    sliced W2 in CIELAB, object pixels vs style (lower:
                                                    closer palette); ratio = stylized / original
      ssim_luminance                                luminance SSIM, original vs stylized, object pixels
      consistency_{short,long}_{original,stylized}  mean |RGB| difference (0..1) of surface points seen in
                                                    two views (depth-exact, sub-pixel, occlusion-tested);
                                                    short: nearest view, long: ~90 degrees away (NaN: none)
      consistency_{short,long}_coverage             valid share of the source views' object pixels
      consistency_{short,long}_pairs (int), _angle_deg   pairs used, their mean angle between directions
      style_score_original, _stylized               learned Magenta style score in [-1, 1] (higher: closer
                                                    to the painting's manner), when the nets are installed
      clip_*, csd_*                                 embedding similarities (`engine.metrics.models`), when
                                                    those models are on disk
      notes                                         list of str: what was skipped and why (absent if none)
    """
    cfg = config or MetricsConfig()
    n = len(cameras)
    if not (len(original_images) == len(stylized_images) == len(masks) == n) or n == 0:
        raise ValueError(
            f"final_metrics needs one original, stylized image and mask per camera (>0 cameras), got "
            f"{len(original_images)}, {len(stylized_images)}, {len(masks)} for {n} cameras"
        )
    notes: list[str] = []
    out: dict[str, Any] = _colour_and_ssim(
        original_images, stylized_images, masks, style_image, cfg.mask_threshold
    )
    if depths is not None:
        images = {"original": original_images, "stylized": stylized_images}
        out.update(consistency_errors(images, depths, masks, cameras, cfg.consistency))
    else:
        notes.append("consistency errors skipped: no depths given")
    if cfg.style_score:
        out.update(_learned_style_scores(original_images, stylized_images, masks, style_image, cfg, notes))
    if cfg.model_scores:
        from .models import model_scores

        scores, skipped = model_scores(
            stylized_images, original_images, style_image, masks, cfg.models_dir, cfg.device
        )
        out.update(scores)
        notes += skipped
    if notes:
        out["notes"] = notes
    return out


def render_views(
    scene: GaussianScene, cameras: Sequence[Camera], backend: str = "auto", background=(0.0, 0.0, 0.0)
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Per view (image [3, H, W], alpha [H, W], depth [H, W]) on CPU, float32, rendered one at a time
    without gradients."""
    from ..render import render

    imgs, alphas, depths = [], [], []
    with torch.no_grad():
        for cam in cameras:
            out = render(scene, cam, background=background, backend=backend)
            imgs.append(out.image.permute(2, 0, 1).float().cpu())
            alphas.append(out.alpha.float().cpu())
            depths.append(out.depth.float().cpu())
    return imgs, alphas, depths


def evaluate_scenes(
    original: GaussianScene,
    stylized: GaussianScene,
    style_image: np.ndarray,
    cameras: Sequence[Camera] | None = None,
    views: int = 8,
    size: int = 256,
    backend: str = "auto",
    with_models: bool = True,
    models_dir: str | os.PathLike | None = None,
    config: MetricsConfig | None = None,
    up: str | None = None,
) -> dict[str, Any]:
    """`final_metrics` on `cameras` (default: `views` orbit views of `size` px around the `up` axis, as
    `splatbrush stylize --up` makes them), plus views, size and
    geometry_identical. `with_models=False` skips the learned style score and the CLIP / CSD scores. When the
    geometry differs, the stylized consistency errors use the stylized scene's own depth and alpha."""
    if cameras is None:
        from ..stylize.parts import default_cameras

        cameras = default_cameras(original, views, size, up=up)
    cfg = config or MetricsConfig()
    if models_dir is not None:
        cfg.models_dir = str(models_dir)
    if not with_models:
        cfg.style_score = cfg.model_scores = False
    im0, a0, d0 = render_views(original, cameras, backend)
    im1, a1, d1 = render_views(stylized, cameras, backend)
    same = original.geometry_equal(stylized)
    out: dict[str, Any] = {
        "views": len(cameras),
        "size": max(cameras[0].width, cameras[0].height),
        "geometry_identical": same,
    }
    out.update(final_metrics(im0, im1, a0, d0, cameras, style_image, cfg))
    if not same:  # the stylized images' own correspondences
        own = consistency_errors({"stylized": im1}, d1, a1, cameras, cfg.consistency)
        out.update({k: v for k, v in own.items() if k.endswith("_stylized")})
    return out
