"""The views a job optimizes: cameras in adjacency order, the colour cache, the original renders.

views = prepare_views(scene, cameras, config, should_stop)   # scene on the job's device
views.cameras, views.originals[i] [1, 3, H, W], views.masks[i] [1, 1, H, W], views.operators (or None)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..cameras.camera import Camera
from ..render import render
from ..scene.gaussians import GaussianScene
from .config import StylizeConfig
from .parts import default_cameras, order_views

log = logging.getLogger("splatbrush.stylize")


class Stopped(Exception):
    """`should_stop` said stop before the optimization began (nothing to checkpoint yet)."""


@dataclass
class PreparedViews:
    cameras: list[Camera]  # fitted to config.size, in adjacency order
    background: Tensor  # [3]
    operators: list | None  # colorcache.ViewOperator per view, or None (full renderer every step)
    originals: list[Tensor]  # [1, 3, H, W] renders of the unstylized scene
    masks: list[Tensor]  # [1, 1, H, W] their alpha
    depths: list[Tensor]  # [H, W] their expected depth (the geometry never changes: valid all job long)
    views_per_step: int  # config.views_per_step, or 1 when the views differ in size
    note: str | None = None  # why the colour cache is not used, when it is not

    def render(self, v: int, sh: Tensor, scene: GaussianScene, backend: str, full_sh=None) -> Tensor:
        """[1, 3, H, W] render of view `v` with colours `sh` (`full_sh()` for the full renderer)."""
        if self.operators is not None:
            return self.operators[v].render(sh, self.background)[None]
        sc = scene.replace(sh=full_sh() if full_sh is not None else sh)
        return render(sc, self.cameras[v], background=self.background, backend=backend).image.permute(
            2, 0, 1
        )[None]


def job_cameras(
    scene: GaussianScene, cameras: Sequence[Camera] | None, config: StylizeConfig
) -> list[Camera]:
    """The given cameras fitted to config.size in adjacency order, or orbit views around the scene."""
    if cameras is None:
        return default_cameras(scene, config.views, config.size, up=config.up)
    cams = [c.fit_to(config.size) for c in cameras]
    return [cams[i] for i in order_views(cams)]


def prepare_views(
    scene: GaussianScene,
    cams: list[Camera],
    config: StylizeConfig,
    should_stop: Callable[[], bool] | None = None,
    timings: dict[str, float] | None = None,
) -> PreparedViews:
    """Colour cache + original renders of every view. `should_stop` is polled between views (Stopped)."""
    import time

    timings = timings if timings is not None else {}
    device = scene.sh.device
    bg = torch.tensor(config.background, dtype=scene.sh.dtype, device=device)
    t0 = time.perf_counter()
    operators, note = color_cache(scene, cams, bg, config, should_stop)
    timings["colour_cache"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    originals, masks, depths = [], [], []
    with torch.no_grad():
        for i, cam in enumerate(cams):
            if should_stop is not None and should_stop():
                raise Stopped()
            if operators is not None:
                op = operators[i]
                image, alpha, depth = op.render(scene.sh, bg), op.alpha, op.depth
            else:
                out = render(scene, cam, background=bg, backend=config.render_backend)
                image, alpha, depth = out.image.permute(2, 0, 1), out.alpha, out.depth
            originals.append(image[None].contiguous())  # [1, 3, H, W]
            masks.append(alpha[None, None].contiguous())  # [1, 1, H, W]
            depths.append(depth.contiguous())  # [H, W]
    timings["original_renders"] = time.perf_counter() - t0
    same_size = len({(c.width, c.height) for c in cams}) == 1
    views_per_step = config.views_per_step if same_size else 1
    return PreparedViews(cams, bg, operators, originals, masks, depths, views_per_step, note)


def color_cache(
    scene: GaussianScene,
    cams: list[Camera],
    bg: Tensor,
    config: StylizeConfig,
    should_stop: Callable[[], bool] | None = None,
):
    """(per-view ViewOperators, None) when the colour cache is usable, else (None, one-line note)."""
    if not config.color_cache:
        return None, None
    if config.render_backend not in ("auto", "torch"):
        return None, None
    from .colorcache import MAX_ABS_DIFF, ColorCacheError, ViewOperator

    try:
        operators = []
        for c in cams:
            if should_stop is not None and should_stop():
                raise Stopped()
            operators.append(ViewOperator(scene, c))
        with torch.no_grad():  # trust it only if it reproduces the renderer on a view
            full = render(scene, cams[0], background=bg, backend="torch").image.permute(2, 0, 1)
            diff = float((operators[0].render(scene.sh, bg) - full).abs().max())
    except (ColorCacheError, RuntimeError, ValueError) as e:
        note = f"colour cache unavailable ({e}); re-rendering every step with the full renderer"
        log.warning(note)
        return None, note
    if not diff <= MAX_ABS_DIFF:
        note = f"colour cache differs from the renderer by {diff:.2e}; using the full renderer"
        log.warning(note)
        return None, note
    return operators, None
