"""Evaluation numbers for a stylized scene (deterministic: fixed seeds, fixed directions).

    style_color_distance(images, masks, style)  sliced Wasserstein-2 distance in CIELAB between the object's
                                                rendered pixels and the style image's pixels (lower = closer
                                                palette); compare stylized against unstylized: the ratio
    luminance_ssim(a, b, masks)                 SSIM of the luminance (CIELAB L / 100), averaged over the
                                                object's pixels (structure kept; 1 = identical)
    consistency_errors(images, depths, ...)     multi-view consistency: colour difference of a surface point
                                                seen in two views, exact correspondences from the rendered
                                                depth (sub-pixel, occlusion-tested), short and long range
    model_scores(stylized, originals, style)    CLIP / CSD similarities when those models are on disk
    final_metrics(originals, stylized, ...)     all of them on rendered views (report.json "metrics")
    evaluate_scenes(original, stylized, style)  renders orbit views of two scenes, then final_metrics

Modules: colour (palette, SSIM), consistency, models (CLIP/CSD), evaluation; the learned Magenta style score
lives in `engine.metrics_style` and is included by `final_metrics`.
"""

from .colour import (
    METRIC_DIRECTIONS,
    METRIC_SEED,
    METRIC_STYLE_HEIGHT,
    luminance_ssim,
    object_pixels_lab,
    sliced_wasserstein,
    style_color_distance,
    style_pixels_lab,
)
from .consistency import (
    ConsistencyConfig,
    Correspondences,
    consistency_errors,
    correspondences,
    project_points,
    sample_bilinear,
    unproject_pixels,
    view_pairs,
)
from .evaluation import MetricsConfig, evaluate_scenes, final_metrics, render_views
from .models import model_scores

__all__ = [
    "METRIC_DIRECTIONS",
    "METRIC_SEED",
    "METRIC_STYLE_HEIGHT",
    "ConsistencyConfig",
    "Correspondences",
    "MetricsConfig",
    "consistency_errors",
    "correspondences",
    "evaluate_scenes",
    "final_metrics",
    "luminance_ssim",
    "model_scores",
    "object_pixels_lab",
    "project_points",
    "render_views",
    "sample_bilinear",
    "sliced_wasserstein",
    "style_color_distance",
    "style_pixels_lab",
    "unproject_pixels",
    "view_pairs",
]
