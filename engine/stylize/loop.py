"""`stylize()`: the optimization loop. Geometry stays fixed; only the SH colours change.

    result = stylize(scene, style_image, cameras=None, config=None, callback=None, should_stop=None,
                     checkpoint_dir=None)

Steps (numbered in the code):
    1. check inputs
    2. prepare views (orbit cameras when none are given, adjacency order) and the original renders
    3. build the guidance modules (model-based ones when their weights exist, else the weight-free default)
    4. optimizer: Adam on the SH DC term (higher bands optional); resume from a checkpoint if there is one
    5. loop: schedule -> render -> guidance -> backward -> step; progress bar, callback, should_stop,
       checkpoints
    6. verify the geometry is bit-identical, assemble the result and its report
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cameras.camera import Camera
from ..guidance.base import Guidance, GuidanceBatch, StepInfo
from ..render import render
from ..scene.gaussians import GaussianScene
from .checkpoint import (
    image_fingerprint,
    load_checkpoint,
    save_checkpoint,
    scene_fingerprint,
    settings_fingerprint,
)
from .config import StylizeConfig
from .parts import _resolve_guidance, build_guidance, default_cameras, order_views, resolve_device
from .schedule import Schedule, StepPlan, build_schedule

log = logging.getLogger("splatbrush.stylize")


@dataclass
class ProgressEvent:
    step: int  # steps done so far (1-based after the first step)
    total_steps: int
    phase: str
    losses: dict[str, float]
    preview: np.ndarray | None = None  # uint8 [h, w, 3], every config.preview_every steps
    elapsed_s: float = 0.0


@dataclass
class StylizeResult:
    scene: GaussianScene  # geometry bit-identical to the input, new SH
    interrupted: bool  # True when should_stop ended it early (a checkpoint was saved if a dir was given)
    report: dict[str, Any]  # settings, versions, timings, loss history, final metrics
    cameras: list[Camera] = field(default_factory=list)  # the optimized views, in schedule order
    steps_done: int = 0


# ---------------------------------------------------------------------------------------------- helpers
def _check_inputs(scene, style_image, cameras, config) -> tuple[np.ndarray, StylizeConfig]:
    if not isinstance(scene, GaussianScene):
        raise TypeError(f"scene must be a GaussianScene, got {type(scene).__name__}")
    if not scene.sh.dtype.is_floating_point:
        raise ValueError(f"scene tensors must be floating point, got {scene.sh.dtype}")
    if scene.num_gaussians == 0:
        raise ValueError("the scene has no Gaussians: nothing to stylize")
    style = np.asarray(style_image)
    if style.ndim != 3 or style.shape[2] != 3 or style.dtype != np.uint8:
        raise ValueError(
            f"style_image must be a uint8 array [H, W, 3], got dtype {style.dtype} shape "
            f"{style.shape} (drop the alpha channel of RGBA images)"
        )
    if min(style.shape[:2]) < 8:
        raise ValueError(f"style_image is too small ({style.shape[1]}x{style.shape[0]}); give at least 8x8")
    if config is None:
        config = StylizeConfig.from_preset("fast")
    if not isinstance(config, StylizeConfig):
        raise TypeError(
            f"config must be a StylizeConfig (StylizeConfig.from_preset(...)), got {type(config)}"
        )
    config.validate()
    if config.device == "auto":
        config = config.with_overrides(device=resolve_device("auto"))
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device {config.device!r} was asked for but CUDA is not available; use device='cpu'"
        )
    if cameras is not None:
        cameras = list(cameras)
        if not cameras:
            raise ValueError("cameras is an empty list; pass None for orbit views")
        bad = [i for i, c in enumerate(cameras) if not isinstance(c, Camera)]
        if bad:
            raise TypeError(f"cameras[{bad[0]}] is a {type(cameras[bad[0]]).__name__}, not a Camera")
    return style, config


def _to_uint8(image: torch.Tensor) -> np.ndarray:  # [3, H, W] in [0, 1] -> [H, W, 3] uint8
    return (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def _versions() -> dict[str, str]:
    try:
        from importlib.metadata import version

        ours = version("splatbrush")
    except Exception:  # not installed (running from a source tree)
        ours = "source"
    return {
        "splatbrush": ours,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


class _Timer:
    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, seconds: float) -> None:
        self.totals[name] = self.totals.get(name, 0.0) + seconds
        self.counts[name] = self.counts.get(name, 0) + 1

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            k: {"total_s": round(v, 4), "calls": self.counts[k], "mean_s": round(v / self.counts[k], 5)}
            for k, v in self.totals.items()
        }


# ---------------------------------------------------------------------------------------------- main
def stylize(
    scene: GaussianScene,
    style_image: np.ndarray,
    cameras: Sequence[Camera] | None = None,
    config: StylizeConfig | None = None,
    callback: Callable[[ProgressEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_dir: Path | str | None = None,
) -> StylizeResult:
    t_start = time.perf_counter()
    timer = _Timer()

    # 1. Check inputs.
    style, config = _check_inputs(scene, style_image, cameras, config)
    device = torch.device(config.device)
    work = scene.to(device=device)

    # 2. Views and their original renders (the content reference and object masks).
    t0 = time.perf_counter()
    if cameras is None:
        cams = default_cameras(scene, config.views, config.size)
    else:
        cams = [c.fit_to(config.size) for c in cameras]
        cams = [cams[i] for i in order_views(cams)]
    # a checkpoint of another job is refused before any expensive set-up
    fingerprints = {
        "scene": scene_fingerprint(scene),
        "style": image_fingerprint(style),
        "settings": settings_fingerprint(config.to_dict()),
        "cameras": [c.to_dict() for c in cams],
    }
    state = load_checkpoint(checkpoint_dir, fingerprints) if checkpoint_dir is not None else None
    bg = torch.tensor(config.background, dtype=work.sh.dtype, device=device)
    operators, cache_note = _color_cache(work, cams, bg, config)
    originals, masks = [], []
    with torch.no_grad():
        for i, cam in enumerate(cams):
            if operators is not None:
                image, alpha = operators[i].render(work.sh, bg), operators[i].alpha
            else:
                out = render(work, cam, background=bg, backend=config.render_backend)
                image, alpha = out.image.permute(2, 0, 1), out.alpha
            originals.append(image[None].contiguous())  # [1, 3, H, W]
            masks.append(alpha[None, None].contiguous())  # [1, 1, H, W]
    same_size = len({(c.width, c.height) for c in cams}) == 1
    views_per_step = config.views_per_step if same_size else 1
    timer.add("prepare_views", time.perf_counter() - t0)

    # 3. Guidance modules.
    t0 = time.perf_counter()
    names, note = _resolve_guidance(config)
    if note:
        log.warning(note)
    notes = [n for n in (note, cache_note) if n]
    modules: dict[str, Guidance] = {n: build_guidance(n, config, style, device) for n in names}
    timer.add("build_guidance", time.perf_counter() - t0)
    targets_fn = next((m.make_targets for m in modules.values() if hasattr(m, "make_targets")), None)
    sched_name, n_opt = config.schedule, config.n_opt
    if sched_name == "weightfree" and config.view_dwell > 1:
        sched_name, n_opt = "weightfree-local", config.view_dwell
    schedule: Schedule = build_schedule(sched_name, config.steps, len(cams), n_opt, views_per_step)
    targets: list[torch.Tensor] | None = None

    # 4. Optimizer over the colours; resume when a checkpoint is there.
    sh0 = work.sh.detach()
    rest = sh0[:, 1:].clone()  # [N, K-1, 3]
    if config.zero_rest:
        rest.zero_()
    if config.stroke_size > 0:  # DC = stroke colour [stroke of g] + residual [g]  (see strokes.py)
        from .strokes import mean_per_stroke, stroke_assignment, stroke_count

        assign = stroke_assignment(work, config.stroke_size, config.stroke_aspect, config.seed)
        k = stroke_count(assign)
        stroke_dc = mean_per_stroke(sh0[:, 0], assign, k)[:, None].clone().requires_grad_(True)  # [K, 1, 3]
        residual = (sh0[:, :1] - stroke_dc.detach()[assign]).clone().requires_grad_(True)  # [N, 1, 3]
        params = {"stroke_dc": stroke_dc, "residual_dc": residual}
        groups = [
            {"params": [stroke_dc], "lr": config.lr, "name": "stroke_dc"},
            {"params": [residual], "lr": config.lr * config.residual_lr_scale, "name": "residual_dc"},
        ]

        def dc_of() -> torch.Tensor:  # [N, 1, 3]
            return stroke_dc.index_select(0, assign) + residual
    else:
        dc = sh0[:, :1].clone().requires_grad_(True)  # [N, 1, 3]
        params = {"sh_dc": dc}
        groups = [{"params": [dc], "lr": config.lr, "name": "sh_dc"}]

        def dc_of() -> torch.Tensor:  # [N, 1, 3]
            return dc

    if rest.shape[1] > 0 and config.lr_rest > 0:
        rest.requires_grad_(True)
        groups.append({"params": [rest], "lr": config.lr_rest, "name": "sh_rest"})
    optimizer = torch.optim.Adam(groups)
    history: list[dict[str, float]] = []
    start_step = 0
    resumed_from = None
    if state is not None:
        with torch.no_grad():
            for name, tensor in params.items():
                tensor.copy_(state["params"][name].to(device))
            rest.copy_(state["sh_rest"].to(device))
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        history = list(state["history"])
        start_step = int(state["step"])
        resumed_from = start_step

    rest_active = rest.shape[1] > 0 and (rest.requires_grad or bool(rest.abs().max() > 0))

    def current_sh() -> torch.Tensor:  # [N, K, 3]; the DC alone while the higher bands are all zero
        return torch.cat([dc_of(), rest], dim=1) if rest_active else dc_of()

    def render_view(v: int) -> torch.Tensor:  # [1, 3, H, W]
        if operators is not None:
            return operators[v].render(current_sh(), bg)[None]
        sc = work.replace(sh=torch.cat([dc_of(), rest], dim=1))
        return render(sc, cams[v], background=bg, backend=config.render_backend).image.permute(2, 0, 1)[None]

    def checkpoint(step_done: int) -> None:
        if checkpoint_dir is None:
            return
        t = time.perf_counter()
        save_checkpoint(
            checkpoint_dir,
            {
                **fingerprints,
                "step": step_done,
                "params": {name: t.detach().cpu().clone() for name, t in params.items()},
                "sh_rest": rest.detach().cpu().clone(),
                "optimizer": optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "history": history,
            },
        )
        timer.add("checkpoint", time.perf_counter() - t)

    # 5. The loop.
    from tqdm.auto import tqdm

    interrupted = False
    bar = tqdm(
        total=config.steps,
        initial=start_step,
        desc="stylize",
        unit="step",
        disable=not config.progress_bar,
        dynamic_ncols=True,
        leave=False,
    )
    try:
        for step in range(start_step, config.steps):
            if should_stop is not None and should_stop():
                interrupted = True
                break
            plan: StepPlan = schedule.plan(step)
            active = _active_terms(plan, modules, targets_fn is not None)
            if "rgb" in active and targets is None and targets_fn is not None:
                t = time.perf_counter()
                targets = [targets_fn(o, m) for o, m in zip(originals, masks, strict=True)]
                timer.add("make_targets", time.perf_counter() - t)

            # 5a. Render the step's views.
            t = time.perf_counter()
            images = [render_view(v) for v in plan.view_ids]
            batch = GuidanceBatch(
                images=torch.cat(images),
                originals=torch.cat([originals[v] for v in plan.view_ids]),
                masks=torch.cat([masks[v] for v in plan.view_ids]),
                info=StepInfo(
                    step=step,
                    total_steps=config.steps,
                    phase=plan.phase,
                    mode=plan.mode,
                    alpha=plan.alpha,
                    view_ids=list(plan.view_ids),
                ),
                targets=torch.cat([targets[v] for v in plan.view_ids]) if targets is not None else None,
            )
            timer.add("render", time.perf_counter() - t)

            # 5b. Loss terms of the active modules, weighted by the stage and the config.
            terms: dict[str, torch.Tensor] = {}
            for name, weight in active.items():
                t = time.perf_counter()
                if name == "rgb":
                    w = batch.masks
                    got = {
                        "rgb": (((batch.images - batch.targets) ** 2) * w).sum() / (3 * w.sum()).clamp_min(1)
                    }
                else:
                    got = modules[name](batch)
                timer.add(f"guidance:{name}", time.perf_counter() - t)
                for key, value in got.items():
                    mult = weight * config.loss_weights.get(key, 1.0) * config.loss_weights.get(name, 1.0)
                    terms[key] = terms.get(key, 0.0) + mult * value
            loss = sum(terms.values())

            # 5c. Backward and step.
            t = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            timer.add("backward_step", time.perf_counter() - t)

            record = {"step": step + 1, "total": float(loss.detach())}
            record.update({k: float(v.detach()) for k, v in terms.items()})
            history.append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['total']:.3f}", refresh=False)
            if (
                config.checkpoint_every
                and (step + 1) % config.checkpoint_every == 0
                and step + 1 < config.steps
            ):
                checkpoint(step + 1)
            if callback is not None:
                preview = None
                if config.preview_every and (
                    (step + 1) % config.preview_every == 0 or step + 1 == config.steps
                ):
                    preview = _to_uint8(batch.images[0])
                callback(
                    ProgressEvent(
                        step + 1,
                        config.steps,
                        plan.phase,
                        {k: v for k, v in record.items() if k != "step"},
                        preview,
                        time.perf_counter() - t_start,
                    )
                )
    finally:
        bar.close()
    steps_done = len(history)
    if interrupted:
        checkpoint(steps_done)

    # 6. Verify the geometry and assemble the result.
    with torch.no_grad():
        final_dc = dc_of()
    new_sh = torch.cat([final_dc, rest], dim=1).detach().to(scene.sh.device, scene.sh.dtype).contiguous()
    result_scene = scene.replace(sh=new_sh)
    if not result_scene.geometry_equal(scene):  # cannot happen unless a module wrote to the scene
        raise RuntimeError("stylize changed the scene geometry; this is a bug, please report it")
    report: dict[str, Any] = {
        "settings": config.to_dict(),
        "versions": _versions(),
        "guidance": names,
        "notes": notes,
        "color_cache": operators is not None,
        "schedule": schedule.describe(),
        "views": [c.to_dict() for c in cams],
        "steps_done": steps_done,
        "interrupted": interrupted,
        "resumed_from": resumed_from,
        "history": history,
    }
    if config.final_metrics and not interrupted:
        t = time.perf_counter()
        report["metrics"] = _final_metrics(
            operators, work, result_scene.to(device=device), style, cams, config, originals, masks
        )
        timer.add("final_metrics", time.perf_counter() - t)
    timer.add("total", time.perf_counter() - t_start)
    report["timings"] = timer.summary()
    return StylizeResult(result_scene, interrupted, report, cams, steps_done)


def _color_cache(scene: GaussianScene, cams: list[Camera], bg: torch.Tensor, config: StylizeConfig):
    """(per-view ViewOperators, None) when the colour cache is usable, else (None, one-line note)."""
    if not config.color_cache:
        return None, None
    if config.render_backend not in ("auto", "torch"):
        return None, None
    from .colorcache import MAX_ABS_DIFF, ColorCacheError, ViewOperator

    try:
        operators = [ViewOperator(scene, c) for c in cams]
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


def _active_terms(plan: StepPlan, modules: dict[str, Guidance], have_targets: bool) -> dict[str, float]:
    """The stage's loss terms that can run; a stage with none left uses the weight-free guidance."""
    active = {n: w for n, w in plan.losses.items() if (n == "rgb" and have_targets) or n in modules}
    if not active:
        if "weightfree" not in modules:
            raise RuntimeError(
                f"stage {plan.stage!r} has no runnable loss term ({sorted(plan.losses)}) and the "
                f"weight-free guidance is not enabled; add 'weightfree' to config.guidance"
            )
        active = {"weightfree": 1.0}
    return active


def _final_metrics(
    operators,
    original: GaussianScene,
    stylized: GaussianScene,
    style: np.ndarray,
    cams: list[Camera],
    config: StylizeConfig,
    originals: list[torch.Tensor],
    masks: list[torch.Tensor],
) -> dict:
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
