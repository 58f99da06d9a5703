"""What the engine's workers run for a job (one runner instance per worker: `for_device`).

`StylizeRunner` is the real one (`engine.stylize.stylize`). `SyntheticRunner` is a deterministic stand-in
with the same checkpoint/stop/progress behaviour and no rendering, for protocol tests and benchmarks
(`splatbrush serve --runner synthetic`); it never claims to stylize anything.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shared_protocol.atomic import atomic_open
from shared_protocol.events import ProgressEvent
from shared_protocol.messages import JobSettings
from shared_protocol.payloads import MASK_ATTRIBUTE
from shared_protocol.splatfile import SplatArrays

from .estimate import JobEstimate, estimate_job


@dataclass
class RunOutcome:
    gaussians: SplatArrays | None  # None when interrupted
    interrupted: bool
    report: dict[str, Any]
    steps_done: int = 0


@dataclass
class JobInputs:
    gaussians: SplatArrays
    style_image: np.ndarray  # [H, W, 3] uint8
    cameras: list[dict[str, Any]] | None
    settings: JobSettings
    overrides: dict[str, Any]


class JobRunner(Protocol):
    name: str

    def validate(self, settings: JobSettings) -> None:
        """Raise ValueError when this engine cannot run `settings` (unknown preset, unavailable device)."""

    def total_steps(self, settings: JobSettings) -> int: ...

    def estimate(
        self, settings: JobSettings, num_gaussians: int, sh_coeffs: int, cameras: list[dict[str, Any]] | None
    ) -> JobEstimate:
        """Memory and time the job will need here (see engine.server.estimate)."""

    def run(
        self,
        job: JobInputs,
        callback: Callable[[ProgressEvent], None],  # the one progress event
        should_stop: Callable[[], bool],
        checkpoint_dir: Path,
    ) -> RunOutcome: ...


def jsonable(obj: Any) -> Any:
    """A report made JSON-safe: numpy/torch scalars to Python numbers, NaN/Inf to None, unknowns to str."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (bool, str)) or obj is None:
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return jsonable(obj.item())
    if isinstance(obj, np.ndarray) and obj.size <= 64:
        return jsonable(obj.tolist())
    return str(obj)


def resolve_device(requested: str, default: str) -> str:
    """auto -> the engine's device; otherwise check the device exists here."""
    import torch

    dev = default if requested == "auto" else requested
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {dev!r} requested but this engine has no CUDA; use device 'cpu' or 'auto'"
            )
        idx = int(dev.split(":")[1]) if ":" in dev else 0
        if idx >= torch.cuda.device_count():
            raise ValueError(f"device {dev!r}: this engine has {torch.cuda.device_count()} CUDA device(s)")
    if dev == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' requested but it is not available on this engine; use 'cpu' or 'auto'")
    return dev


class StylizeRunner:
    name = "stylize"

    def __init__(self, device: str = "auto", checkpoint_every: int | None = None, **overrides: Any):
        """`overrides`: other StylizeConfig fields fixed for every job (e.g. final_metrics=False)."""
        self.device = device
        self.checkpoint_every = checkpoint_every
        self.extra = overrides

    def for_device(self, device: str) -> StylizeRunner:
        """A copy of this runner for one worker of a pool: its own instance, jobs asking 'auto' run on
        `device`. Nothing is shared between workers but the (read-only) overrides."""
        r = copy.copy(self)
        r.device, r.extra = device, dict(self.extra)
        return r

    def _config(self, settings: JobSettings, overrides: dict[str, Any]):
        from engine.stylize import StylizeConfig

        device = resolve_device(settings.device, self.device)
        return StylizeConfig.from_settings(settings, device=device, progress_bar=False, **overrides)

    def validate(self, settings: JobSettings) -> None:
        self._config(settings, self.overrides())

    def overrides(self) -> dict[str, Any]:
        out = dict(self.extra)
        if self.checkpoint_every is not None:
            out["checkpoint_every"] = self.checkpoint_every
        return out

    def total_steps(self, settings: JobSettings) -> int:
        return int(self._config(settings, self.overrides()).steps)

    def estimate(self, settings, num_gaussians, sh_coeffs, cameras):
        c = self._config(settings, self.overrides())
        return estimate_job(
            c.steps, c.size, c.views, c.views_per_step, num_gaussians, sh_coeffs, cameras, str(c.device)
        )

    def run(self, job, callback, should_stop, checkpoint_dir):
        from engine.cameras import Camera
        from engine.scene.io import scene_from_arrays, scene_to_arrays
        from engine.stylize import stylize

        config = self._config(job.settings, job.overrides)
        extra = dict(job.gaussians.extra)
        mask = extra.pop(MASK_ATTRIBUTE, None)
        scene = scene_from_arrays(job.gaussians)
        cams = None if job.cameras is None else [Camera.from_dict(c) for c in job.cameras]

        def on_progress(ev: Any) -> None:
            if not isinstance(ev, ProgressEvent):  # the loop's own event class, same fields
                ev = ProgressEvent(
                    ev.step,
                    ev.total_steps,
                    ev.phase,
                    dict(ev.losses),
                    ev.preview,
                    getattr(ev, "elapsed_s", 0.0),
                )
            callback(ev)

        res = stylize(scene, job.style_image, cams, config, on_progress, should_stop, checkpoint_dir, mask)
        report = jsonable(res.report)
        if res.interrupted:
            return RunOutcome(None, True, report, res.steps_done)
        return RunOutcome(scene_to_arrays(res.scene, extra=extra), False, report, res.steps_done)


class SyntheticRunner:
    """Deterministic fake job: each step shifts the SH DC colours by noise seeded by (seed, step), so a run
    resumed from a checkpoint ends bit-identical to an uninterrupted one. `step_s` sleeps per step."""

    name = "synthetic"

    def __init__(self, step_s: float = 0.02, checkpoint_every: int = 5, preview_every: int = 5):
        self.step_s = step_s
        self.checkpoint_every = checkpoint_every
        self.preview_every = preview_every

    def for_device(self, device: str) -> SyntheticRunner:
        """A copy for one worker of a pool (the synthetic runner runs on no device)."""
        return copy.copy(self)

    def validate(self, settings: JobSettings) -> None:
        pass

    def overrides(self) -> dict[str, Any]:
        return {}

    def total_steps(self, settings: JobSettings) -> int:
        return settings.steps or 20

    def estimate(self, settings, num_gaussians, sh_coeffs, cameras):
        steps = self.total_steps(settings)
        memory = num_gaussians * (sh_coeffs * 3 + 14) * 4 * 3
        detail = f"synthetic, {num_gaussians} Gaussians, {steps} steps"
        return JobEstimate(memory, steps * self.step_s, detail)

    def run(self, job, callback, should_stop, checkpoint_dir):
        total = self.total_steps(job.settings)
        ckpt = checkpoint_dir / "synthetic.npz"
        dc = job.gaussians.sh[:, 0].astype(np.float32).copy()  # [N, 3]
        start = 0
        if ckpt.is_file():
            with np.load(ckpt, allow_pickle=False) as z:
                dc, start = z["dc"], int(z["step"])

        def save(step: int) -> None:
            checkpoint_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            with atomic_open(ckpt, mode=0o600) as f:
                np.savez(f, dc=dc, step=step)

        t0 = time.perf_counter()
        for step in range(start, total):
            if should_stop():
                save(step)
                return RunOutcome(None, True, {"steps_done": step}, step)
            rng = np.random.default_rng([job.settings.seed, step])
            dc = dc + rng.normal(0.0, 0.01, size=dc.shape).astype(np.float32)
            if self.step_s:
                time.sleep(self.step_s)
            preview = None
            if self.preview_every and (step + 1) % self.preview_every == 0:
                preview = np.full((8, 8, 3), (step * 7) % 256, np.uint8)
            losses = {"drift": float(np.abs(dc).mean())}
            callback(ProgressEvent(step + 1, total, "synthetic", losses, preview, time.perf_counter() - t0))
            if self.checkpoint_every and (step + 1) % self.checkpoint_every == 0:
                save(step + 1)
        sh = job.gaussians.sh.copy()
        sh[:, 0] = dc
        g = SplatArrays(
            job.gaussians.means,
            job.gaussians.quats,
            job.gaussians.log_scales,
            job.gaussians.opacity_logits,
            sh,
            dict(job.gaussians.extra),
        )
        report = {
            "runner": "synthetic",
            "steps": total,
            "resumed_from": start or None,
            "time_s": time.perf_counter() - t0,
        }
        json.dumps(report)
        return RunOutcome(g, False, report, total)


RUNNERS = {"stylize": StylizeRunner, "synthetic": SyntheticRunner}
