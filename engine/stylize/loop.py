"""`stylize()`: the optimization loop. Geometry stays fixed; only the SH colours change.

    result = stylize(scene, style_image, cameras=None, config=None, callback=None, should_stop=None,
                     checkpoint_dir=None, mask=None)

Steps (each a function below, each timed in report["timings"]):
    1. check inputs                                   check_inputs
    2. views: orbit or given cameras in adjacency order, colour cache, original renders   views.py
    3. guidance modules and the schedule              guidance_set.py
    4. colours and their optimizer (stroke cells, mask, displayable range); resume      colours.py
    5. the loop: schedule -> render -> guidance -> backward -> step -> project; progress bar, callback,
       should_stop, checkpoints                       run_steps / one_step
    6. the palette finish: a global colour map onto the painting's palette (when asked)  palette.py
    7. verify the geometry, assemble the result and its report                           finish
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared_protocol.events import ProgressEvent

from ..cameras.camera import Camera
from ..guidance.base import GuidanceBatch, StepInfo
from ..scene.gaussians import GaussianScene
from .checkpoint import (
    image_fingerprint,
    load_checkpoint,
    save_checkpoint,
    scene_fingerprint,
    settings_fingerprint,
)
from .colours import ColourParams
from .config import StylizeConfig
from .guidance_set import JobGuidance, build_job_guidance
from .palette import palette_finish
from .parts import default_preset, resolve_device
from .report import StageTimer, final_metrics, to_uint8, versions
from .views import PreparedViews, Stopped, job_cameras, prepare_views

log = logging.getLogger("splatbrush.stylize")

__all__ = ["ProgressEvent", "StylizeResult", "stylize"]


@dataclass
class StylizeResult:
    scene: GaussianScene  # geometry bit-identical to the input, new SH
    interrupted: bool  # True when should_stop ended it early (a checkpoint was saved if a dir was given)
    report: dict[str, Any]  # settings, versions, timings, loss history, final metrics
    cameras: list[Camera] = field(default_factory=list)  # the optimized views, in schedule order
    steps_done: int = 0


@dataclass
class _Job:
    """Everything the loop's steps share."""

    config: StylizeConfig
    work: GaussianScene  # the input scene on the job's device
    views: PreparedViews
    guidance: JobGuidance
    colours: ColourParams
    timer: StageTimer
    fingerprints: dict[str, Any]
    checkpoint_dir: Path | str | None
    history: list[dict[str, float]] = field(default_factory=list)
    targets: list[torch.Tensor] | None = None
    palette: dict[str, Any] | None = None  # what the palette finish did (report.json "palette_finish")

    def render(self, v: int) -> torch.Tensor:  # [1, 3, H, W]
        c = self.colours
        return self.views.render(v, c.current_sh(), self.work, self.config.render_backend, c.full_sh)

    def checkpoint(self, step_done: int) -> None:
        if self.checkpoint_dir is None:
            return
        with self.timer("checkpoint"):
            state = {**self.fingerprints, "step": step_done, "torch_rng": torch.get_rng_state()}
            state["guidance_state"] = {n: m.state_dict() for n, m in self.guidance.modules.items()}
            save_checkpoint(self.checkpoint_dir, {**state, **self.colours.state(), "history": self.history})


# ---------------------------------------------------------------------------------------------- main
def stylize(
    scene: GaussianScene,
    style_image: np.ndarray,
    cameras: Sequence[Camera] | None = None,
    config: StylizeConfig | None = None,
    callback: Callable[[ProgressEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_dir: Path | str | None = None,
    mask: np.ndarray | torch.Tensor | None = None,
) -> StylizeResult:
    """Stylize `scene` with `style_image` (uint8 [H, W, 3]). `mask` [N] in [0, 1]: restyle only those
    Gaussians (0 keeps a Gaussian's SH bit-identical; values between 0 and 1 blend, a soft edge)."""
    t_start = time.perf_counter()
    timer = StageTimer()

    # 1. Check inputs.
    with timer("check_inputs"):
        style, config, mask_t = check_inputs(scene, style_image, cameras, config, mask)
        device = torch.device(config.device)
        work = scene.to(device=device)

    # 2. Views; a checkpoint of another job is refused before any expensive set-up.
    with timer("cameras"):
        cams = job_cameras(scene, cameras, config)
        fingerprints = _fingerprints(scene, style, config, cams, mask_t)
        state = load_checkpoint(checkpoint_dir, fingerprints) if checkpoint_dir is not None else None
    try:
        with timer("prepare_views"):
            stages: dict[str, float] = {}
            views = prepare_views(work, cams, config, should_stop, stages)
        for name, seconds in stages.items():
            timer.add(f"prepare_views:{name}", seconds)
    except Stopped:
        return _stopped_before_start(scene, config, cams, timer, t_start)

    # 3. Guidance modules and the schedule.
    with timer("build_guidance"):
        guidance = build_job_guidance(config, style, device, len(cams), views.views_per_step)

    # 4. Colours and their optimizer; resume when a checkpoint is there.
    with timer("colours"):
        colours = ColourParams(work, config, mask_t)
    job = _Job(config, work, views, guidance, colours, timer, fingerprints, checkpoint_dir)
    start_step = _resume(job, state)

    # 5. The loop.
    interrupted = run_steps(job, start_step, callback, should_stop, t_start)

    # 6. The palette finish (nothing unless the config asks; skipped when stopped: a resume does it).
    if not interrupted:
        with timer("palette_finish"):
            job.palette = palette_finish(views, colours, style, config, work)

    # 7. Verify the geometry and assemble the result.
    return finish(job, scene, style, interrupted, start_step if state is not None else None, t_start)


# ---------------------------------------------------------------------------------------------- 1. inputs
def check_inputs(scene, style_image, cameras, config, mask=None):
    """(style uint8 [H, W, 3], validated config with the device resolved, mask tensor [N] or None)."""
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
        config = StylizeConfig.from_preset(default_preset())
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
    return style, config, check_mask(mask, scene.num_gaussians)


def check_mask(mask, n: int) -> torch.Tensor | None:
    """A per-Gaussian mask as float64 [N] in [0, 1], or None; ValueError naming what is wrong."""
    if mask is None:
        return None
    m = torch.as_tensor(np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask)).reshape(-1)
    if m.dtype == torch.bool:
        m = m.to(torch.float64)
    if not m.dtype.is_floating_point:
        m = m.to(torch.float64)
    if m.numel() != n:
        raise ValueError(f"mask has {m.numel()} values but the scene has {n} Gaussians")
    if not bool(torch.isfinite(m).all()) or float(m.min()) < 0 or float(m.max()) > 1:
        raise ValueError(
            f"mask values must be finite and in [0, 1], got [{float(m.min())}, {float(m.max())}]"
        )
    if float(m.max()) == 0:
        raise ValueError("mask selects no Gaussian: nothing to stylize")
    return m.to(torch.float64)


def _fingerprints(scene, style, config, cams, mask) -> dict[str, Any]:
    fp = {
        "scene": scene_fingerprint(scene),
        "style": image_fingerprint(style),
        "settings": settings_fingerprint(config.to_dict()),
        "cameras": [c.to_dict() for c in cams],
    }
    if mask is not None:
        import hashlib

        fp["mask"] = hashlib.sha256(mask.numpy().tobytes()).hexdigest()
    return fp


# ---------------------------------------------------------------------------------------------- 4. resume
def _resume(job: _Job, state: dict[str, Any] | None) -> int:
    if state is None:
        return 0
    job.colours.load_state(state)
    torch.set_rng_state(state["torch_rng"])
    job.history = list(state["history"])
    for name, guidance_state in state.get("guidance_state", {}).items():
        if name in job.guidance.modules:
            job.guidance.modules[name].load_state_dict(guidance_state)
    return int(state["step"])


# ---------------------------------------------------------------------------------------------- 5. loop
def run_steps(job: _Job, start_step: int, callback, should_stop, t_start: float) -> bool:
    """Steps start_step..config.steps; True when should_stop interrupted them (a checkpoint is saved)."""
    from tqdm.auto import tqdm

    config = job.config
    bar = tqdm(
        total=config.steps,
        initial=start_step,
        desc="stylize",
        unit="step",
        disable=not config.progress_bar,
        dynamic_ncols=True,
        leave=False,
    )
    interrupted = False
    try:
        for step in range(start_step, config.steps):
            if should_stop is not None and should_stop():
                interrupted = True
                break
            record, batch, phase = one_step(job, step)
            job.history.append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['total']:.3f}", refresh=False)
            done = step + 1
            if config.checkpoint_every and done % config.checkpoint_every == 0 and done < config.steps:
                job.checkpoint(done)
            if callback is not None:
                every = config.preview_every
                show = every and (done % every == 0 or done == config.steps)
                preview = to_uint8(batch.images[0]) if show else None
                losses = {k: v for k, v in record.items() if k != "step"}
                callback(
                    ProgressEvent(done, config.steps, phase, losses, preview, time.perf_counter() - t_start)
                )
    finally:
        bar.close()
    if interrupted:
        job.checkpoint(len(job.history))
    return interrupted


def one_step(job: _Job, step: int) -> tuple[dict[str, float], GuidanceBatch, str]:
    """One optimizer step: (history record, the step's batch, its phase name)."""
    config, timer, views = job.config, job.timer, job.views
    plan = job.guidance.schedule.plan(step)
    active = job.guidance.active_terms(plan)
    targets_fn = job.guidance.targets_fn
    if "rgb" in active and job.targets is None and targets_fn is not None:
        with timer("make_targets"):
            job.targets = [targets_fn(o, m) for o, m in zip(views.originals, views.masks, strict=True)]

    # a. Render the step's views.
    with timer("render"):
        ids = list(plan.view_ids)
        images = [job.render(v) for v in ids]
        info = StepInfo(step, config.steps, plan.phase, plan.mode, plan.alpha, ids)
        batch = GuidanceBatch(
            images=torch.cat(images),
            originals=torch.cat([views.originals[v] for v in ids]),
            masks=torch.cat([views.masks[v] for v in ids]),
            info=info,
            targets=torch.cat([job.targets[v] for v in ids]) if job.targets is not None else None,
        )

    # b. Loss terms of the active modules, weighted by the stage and the config.
    terms = job.guidance.step_terms(active, batch, config.loss_weights, timer)
    loss = sum(terms.values())

    # c. Backward, step, and back into the displayable colour range.
    with timer("backward_step"):
        opt = job.colours.optimizer
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        job.colours.project()

    record = {"step": step + 1, "total": float(loss.detach())}
    record.update({k: float(v.detach()) for k, v in terms.items()})
    return record, batch, plan.phase


# ---------------------------------------------------------------------------------------------- 7. result
def finish(job: _Job, scene, style, interrupted: bool, resumed_from, t_start: float) -> StylizeResult:
    config, timer = job.config, job.timer
    with timer("result"):
        new_sh = job.colours.final_sh().to(scene.sh.device, scene.sh.dtype).contiguous()
        result_scene = scene.replace(sh=new_sh)
        if not result_scene.geometry_equal(scene):  # cannot happen unless a module wrote to the scene
            raise RuntimeError("stylize changed the scene geometry; this is a bug, please report it")
    report: dict[str, Any] = {
        "settings": config.to_dict(),
        "versions": versions(),
        "guidance": job.guidance.names,
        "notes": [n for n in (*job.guidance.notes, job.views.note) if n],
        "color_cache": job.views.operators is not None,
        "schedule": job.guidance.schedule.describe(),
        "views": [c.to_dict() for c in job.views.cameras],
        "steps_done": len(job.history),
        "interrupted": interrupted,
        "resumed_from": resumed_from,
        "history": job.history,
        "colour_range": job.colours.range_report(),
        "palette_finish": job.palette,
        "masked_gaussians": None if job.colours.mask is None else int((job.colours.mask > 0).sum()),
    }
    if config.final_metrics and not interrupted:
        with timer("final_metrics"):
            stylized = result_scene.to(device=job.work.sh.device)
            report["metrics"] = final_metrics(job.views, stylized, style, config)
    timer.add("total", time.perf_counter() - t_start)
    report["timings"] = timer.summary()
    return StylizeResult(result_scene, interrupted, report, job.views.cameras, len(job.history))


def _stopped_before_start(scene, config, cams, timer: StageTimer, t_start: float) -> StylizeResult:
    """should_stop during the set-up: the scene unchanged, nothing optimized, no checkpoint."""
    timer.add("total", time.perf_counter() - t_start)
    report = {
        "settings": config.to_dict(),
        "versions": versions(),
        "steps_done": 0,
        "interrupted": True,
        "notes": ["stopped during set-up, before the first step"],
        "history": [],
        "timings": timer.summary(),
    }
    return StylizeResult(scene, True, report, cams, 0)
