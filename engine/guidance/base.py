"""The one contract every guidance module follows.

A guidance module turns rendered views into named loss terms:

    module = SomeGuidance(config, style_image, device)  # heavy set-up (models, style statistics), once
    terms = module(batch)  # dict[str, Tensor] of scalar losses, already weighted

`batch` carries the renders of the views optimized at this step, their original (pre-stylization) renders,
masks and the step's schedule information. The loop sums the returned terms (after the phase's weights)
and logs each by name. Modules never touch the scene.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class StepInfo:
    step: int  # 0-based global step
    total_steps: int
    phase: str  # name of the schedule phase (e.g. "global-sds", "local")
    mode: str  # "local" | "global" | "global-fix" | "global-free"
    alpha: float  # progress within the current noise sweep, in [0, 1): drives DSSD timestep and guidance
    view_ids: list[int] = field(default_factory=list)  # indices (into the job's view list) of the batch


@dataclass
class GuidanceBatch:
    images: Tensor  # [B, 3, H, W] current renders in [0, 1], differentiable w.r.t. the SH colours
    originals: Tensor  # [B, 3, H, W] renders of the unstylized scene (no grad)
    masks: Tensor  # [B, 1, H, W] render alpha of the original scene, in [0, 1] (no grad)
    info: StepInfo
    targets: Tensor | None = (
        None  # [B, 3, H, W] 2D-stylized target views for RGB losses, when the phase has them
    )


class Guidance:
    """Base class: subclasses set `name` and implement `__call__`."""

    name: str = "guidance"

    def __call__(self, batch: GuidanceBatch) -> dict[str, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """What the guidance has learned during the job (saved in checkpoints; most have nothing)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` output when a job resumes."""
