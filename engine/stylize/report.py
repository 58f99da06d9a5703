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
    views,  # views.PreparedViews: cameras, originals, masks, depths, operators
    stylized: GaussianScene,
    style: np.ndarray,  # uint8 [H, W, 3]
    config: StylizeConfig,
) -> dict:
    """report.json "metrics": `engine.metrics.final_metrics` on the job's views (colour distance, luminance
    SSIM, depth-exact consistency, learned style score, CLIP/CSD when on disk). Never fails the job: a
    problem becomes a note."""
    from ..metrics import MetricsConfig
    from ..metrics import final_metrics as compute

    bg = torch.tensor(config.background, dtype=stylized.sh.dtype, device=stylized.sh.device)
    images = []
    with torch.no_grad():  # one view at a time
        for i, cam in enumerate(views.cameras):
            if views.operators is not None:
                img = views.operators[i].render(stylized.sh, bg)
            else:
                img = render(stylized, cam, background=bg, backend=config.render_backend).image.permute(
                    2, 0, 1
                )
            images.append(img.float().cpu())
    originals = [o[0].float().cpu() for o in views.originals]
    masks = [m[0, 0].float().cpu() for m in views.masks]
    depths = [d.float().cpu() for d in views.depths]
    try:
        return compute(originals, images, masks, depths, views.cameras, style, MetricsConfig())
    except ValueError as e:  # e.g. no view shows the object
        return {"notes": [f"metrics skipped: {e}"]}
