"""The guidance of one job: which modules run, the schedule that drives them, and each step's loss terms.

g = build_job_guidance(config, style, device, n_views, views_per_step)
g.modules {name: Guidance}, g.schedule, g.notes
terms = g.step_terms(plan, batch, config.loss_weights, timer)   # {term: weighted scalar}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..guidance import registry
from ..guidance.base import Guidance, GuidanceBatch
from .config import StylizeConfig
from .parts import build_guidance, resolve_guidance
from .schedule import Schedule, StepPlan, build_schedule

log = logging.getLogger("splatbrush.stylize")


@dataclass
class JobGuidance:
    modules: dict[str, Guidance]
    names: list[str]
    schedule: Schedule
    notes: list[str] = field(default_factory=list)

    @property
    def targets_fn(self):
        """make_targets(originals, masks) of the first module that provides RGB targets, or None."""
        for name, m in self.modules.items():
            if registry.get(name).provides_targets and hasattr(m, "make_targets"):
                return m.make_targets
        return None

    def active_terms(self, plan: StepPlan) -> dict[str, float]:
        """The stage's loss terms that can run; a stage with none left uses the weight-free guidance."""
        have_targets = self.targets_fn is not None
        active = {n: w for n, w in plan.losses.items() if (n == "rgb" and have_targets) or n in self.modules}
        if not active:
            if "weightfree" not in self.modules:
                raise RuntimeError(
                    f"stage {plan.stage!r} has no runnable loss term ({sorted(plan.losses)}) and the "
                    f"weight-free guidance is not enabled; add 'weightfree' to config.guidance"
                )
            active = {"weightfree": 1.0}
        return active

    def step_terms(
        self, active: dict[str, float], batch: GuidanceBatch, loss_weights: dict[str, float], timer
    ) -> dict[str, Tensor]:
        """Loss terms of the active modules, weighted by the stage and by `loss_weights` (module name and
        term name; once when they are the same)."""
        terms: dict[str, Tensor] = {}
        for name, weight in active.items():
            with timer(f"guidance:{name}"):
                got = {"rgb": rgb_loss(batch)} if name == "rgb" else self.modules[name](batch)
            for key, value in got.items():
                mult = weight * loss_weights.get(name, 1.0)
                if key != name:
                    mult = mult * loss_weights.get(key, 1.0)
                terms[key] = terms.get(key, 0.0) + mult * value
        return terms


def rgb_loss(batch: GuidanceBatch) -> Tensor:
    """Masked MSE between the renders and the RGB targets."""
    w = batch.masks
    return (((batch.images - batch.targets) ** 2) * w).sum() / (3 * w.sum()).clamp_min(1)


def build_job_guidance(
    config: StylizeConfig, style: np.ndarray, device: torch.device, n_views: int, views_per_step: int
) -> JobGuidance:
    names, note = resolve_guidance(config)
    if note:
        log.warning(note)
    modules = {n: build_guidance(n, config, style, device) for n in names}
    sched_name, n_opt = config.schedule, config.n_opt
    if sched_name == "weightfree" and config.view_dwell > 1:
        sched_name, n_opt = "weightfree-local", config.view_dwell
    if sched_name == "paper":
        terms = {n: 1.0 for n in names if registry.get(n).role == "sds"}
    else:
        terms = {n: 1.0 for n in names}
    schedule = build_schedule(sched_name, config.steps, n_views, n_opt, views_per_step, terms)
    return JobGuidance(modules, names, schedule, [note] if note else [])
