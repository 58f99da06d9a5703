"""The report of a stylization job: stage timings, versions, final metrics.

timer = StageTimer()
with timer("prepare_views"): ...          # or timer.add("render", seconds)
timer.summary() -> {"prepare_views": {"total_s", "calls", "mean_s"}, ...}
"""

from __future__ import annotations

import platform
import time
from contextlib import contextmanager

import numpy as np
import torch

from ..cameras.camera import Camera
from ..render import render
from ..scene.gaussians import GaussianScene
from .config import StylizeConfig


class StageTimer:
    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, seconds: float) -> None:
        self.totals[name] = self.totals.get(name, 0.0) + seconds
        self.counts[name] = self.counts.get(name, 0) + 1

    @contextmanager
    def __call__(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            k: {"total_s": round(v, 4), "calls": self.counts[k], "mean_s": round(v / self.counts[k], 5)}
            for k, v in self.totals.items()
        }


def versions() -> dict[str, str]:
    try:
        from importlib.metadata import PackageNotFoundError, version

        ours = version("splatbrush")
    except PackageNotFoundError:  # not installed (running from a source tree)
        ours = "source"
    return {
        "splatbrush": ours,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def to_uint8(image: torch.Tensor) -> np.ndarray:  # [3, H, W] in [0, 1] -> [H, W, 3] uint8
    return (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def final_metrics(
    operators,
    stylized: GaussianScene,
    style: np.ndarray,
    cams: list[Camera],
    config: StylizeConfig,
    originals: list[torch.Tensor],
    masks: list[torch.Tensor],
) -> dict:
    """Colour distance to the style (original and stylized, their ratio) and luminance SSIM, on all views."""
    from .. import metrics

    bg = torch.tensor(config.background, dtype=stylized.sh.dtype, device=stylized.sh.device)
    with torch.no_grad():
        if operators is not None:
            imgs = [op.render(stylized.sh, bg)[None] for op in operators]
        else:
            imgs = [
                render(stylized, c, background=bg, backend=config.render_backend).image.permute(2, 0, 1)[None]
                for c in cams
            ]
    if len({tuple(i.shape) for i in imgs}) != 1:
        return {}
    im1 = torch.cat(imgs).cpu()
    im0 = torch.cat(originals).cpu()
    m = torch.cat(masks).cpu()
    if int((m > 0.5).sum()) == 0:
        return {}
    sp = metrics.style_pixels_lab(style)
    d0 = metrics.style_color_distance(im0, m, sp)
    d1 = metrics.style_color_distance(im1, m, sp)
    return {
        "style_distance_original": d0,
        "style_distance_stylized": d1,
        "style_distance_ratio": d1 / d0 if d0 > 0 else float("nan"),
        "ssim_luminance": metrics.luminance_ssim(im0, im1, m),
    }
