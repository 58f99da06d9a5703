"""Progressive style outpainting as data: phases, their modes and losses, and which views each step uses.

A schedule is a list of `Phase`s covering steps [0, total). Each phase cycles through its `Stage`s, one per
step (the supplement's "alternating global RGB and global SDS" is a phase with two stages). Everything a step
needs is computed arithmetically from the step number (`Schedule.plan(step)`), so a resumed run takes the
exact same path as an uninterrupted one.

Modes (method.md, "Progressive style outpainting"; our reading is in docs/stylization.md):
    global       the views are visited in adjacency order, `views_per_step` at a time; a round is one pass
                 over all views and every view of a round shares one noise level:
                 alpha = (floor(i * B / n_view) mod n_opt) / n_opt
    global-fix   as global, and the guidance uses ONE noise sample and timestep for every view of the round
    global-free  as global, with independent noise per view
    local        one view at a time; each view sweeps from high to low noise before the next view starts:
                 alpha = (i mod n_opt) / n_opt,  view = floor(i / n_opt) mod n_view
where i counts the steps of that stage inside its phase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

MODES = ("local", "global", "global-fix", "global-free")
# Supplement step boundaries for 2800 steps; other totals scale them proportionally.
PAPER_STEPS = 2800
PAPER_BOUNDS = (100, 600, 1000, 1900)


@dataclass(frozen=True)
class Stage:
    name: str
    mode: str  # one of MODES
    losses: dict[str, float] = field(default_factory=dict)  # term/module name -> weight; "rgb" = target MSE

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"stage {self.name!r}: unknown mode {self.mode!r}; choose one of {MODES}")


@dataclass(frozen=True)
class Phase:
    name: str
    start: int  # first step (inclusive, 0-based)
    end: int  # last step (exclusive)
    stages: tuple[Stage, ...]  # cycled one per step

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"phase {self.name!r}: bad step range [{self.start}, {self.end})")
        if not self.stages:
            raise ValueError(f"phase {self.name!r} has no stages")


@dataclass(frozen=True)
class StepPlan:
    step: int
    phase: str
    stage: str
    mode: str
    alpha: float  # in [0, 1)
    view_ids: list[int]  # indices into the job's view list
    losses: dict[str, float]


class Schedule:
    def __init__(self, phases: Sequence[Phase], n_views: int, n_opt: int = 10, views_per_step: int = 1):
        if n_views < 1:
            raise ValueError(f"a schedule needs at least one view, got n_views={n_views}")
        if n_opt < 1:
            raise ValueError(f"n_opt must be >= 1, got {n_opt}")
        phases = sorted(phases, key=lambda p: p.start)
        for a, b in zip(phases, phases[1:], strict=False):
            if b.start != a.end:
                raise ValueError(
                    f"phases must tile the steps: {a.name!r} ends at {a.end}, {b.name!r} starts at {b.start}"
                )
        if phases and phases[0].start != 0:
            raise ValueError(f"the first phase must start at step 0, got {phases[0].start}")
        self.phases = tuple(phases)
        self.n_views = n_views
        self.n_opt = n_opt
        self.views_per_step = max(1, min(views_per_step, n_views))

    @property
    def total_steps(self) -> int:
        return self.phases[-1].end if self.phases else 0

    def phase_at(self, step: int) -> Phase:
        for p in self.phases:
            if p.start <= step < p.end:
                return p
        raise IndexError(f"step {step} is outside the schedule [0, {self.total_steps})")

    def plan(self, step: int) -> StepPlan:
        p = self.phase_at(step)
        k = step - p.start
        stage = p.stages[k % len(p.stages)]
        i = k // len(p.stages)  # occurrence of this stage within the phase
        if stage.mode == "local":
            alpha = local_alpha(i, self.n_opt)
            views = [(i // self.n_opt) % self.n_views]
        else:
            b = self.views_per_step
            alpha = global_alpha(i * b, self.n_views, self.n_opt)
            views = [(i * b + j) % self.n_views for j in range(b)]
        return StepPlan(step, p.name, stage.name, stage.mode, alpha, views, dict(stage.losses))

    def loss_names(self) -> set[str]:
        return {name for p in self.phases for s in p.stages for name in s.losses}

    def describe(self) -> list[dict]:
        return [
            {
                "name": p.name,
                "start": p.start,
                "end": p.end,
                "stages": [{"name": s.name, "mode": s.mode, "losses": dict(s.losses)} for s in p.stages],
            }
            for p in self.phases
        ]


# ---------------------------------------------------------------------------------------------- maths
def global_alpha(i: int, n_views: int, n_opt: int) -> float:
    """alpha = (floor(i / n_view) mod n_opt) / n_opt: every view of a round shares one noise level."""
    return ((i // n_views) % n_opt) / n_opt


def local_alpha(i: int, n_opt: int) -> float:
    """alpha = (i mod n_opt) / n_opt: each view goes from high to low noise before the next starts."""
    return (i % n_opt) / n_opt


# ---------------------------------------------------------------------------------------------- builders
def weightfree_phases(total: int, terms: dict[str, float] | None = None, local: bool = False) -> list[Phase]:
    """One phase: every step optimizes the next view(s) in adjacency order ("global"), or each view for
    n_opt consecutive steps before its neighbour ("local", with n_opt = the view dwell)."""
    terms = terms or {"weightfree": 1.0}
    mode = "local" if local else "global"
    return [Phase(mode, 0, total, (Stage(mode, mode, dict(terms)),))]


def paper_phases(total: int = PAPER_STEPS, sds_terms: dict[str, float] | None = None) -> list[Phase]:
    """The supplement's 2800-step schedule, scaled to `total` steps. `sds_terms`: the SDS stages' terms (the
    job's guidance with role "sds", engine/guidance/registry.py); a stage left with none runs the
    weight-free guidance (the loop's fallback).

    [0, 100)      global: alternate global RGB / global SDS
    [100, 600)    main RGB loss in local mode, alternating with global SDS (the supplement's global phase
                  covers 1-1000 and its local RGB phase 100-600: during the overlap the RGB steps are local)
    [600, 1000)   global: alternate global RGB / global SDS
    [1000, 1900)  alternate global-fix / global-free SDS
    [1900, 2800)  local SDS
    """
    sds = dict(sds_terms or {})
    b = [round(x * total / PAPER_STEPS) for x in PAPER_BOUNDS]
    edges = [0, *b, total]
    g_rgb = Stage("global-rgb", "global", {"rgb": 1.0})
    g_sds = Stage("global-sds", "global", dict(sds))
    specs = [
        ("global", (g_rgb, g_sds)),
        ("local-rgb", (Stage("local-rgb", "local", {"rgb": 1.0}), g_sds)),
        ("global", (g_rgb, g_sds)),
        (
            "global-fix-free",
            (Stage("global-fix", "global-fix", dict(sds)), Stage("global-free", "global-free", dict(sds))),
        ),
        ("local", (Stage("local-sds", "local", dict(sds)),)),
    ]
    return [
        Phase(name, s, e, stages)
        for (name, stages), s, e in zip(specs, edges[:-1], edges[1:], strict=True)
        if e > s
    ]


def build_schedule(
    name: str,
    total: int,
    n_views: int,
    n_opt: int = 10,
    views_per_step: int = 1,
    terms: dict[str, float] | None = None,
) -> Schedule:
    if name == "weightfree":
        phases = weightfree_phases(total, terms)
    elif name == "weightfree-local":
        phases = weightfree_phases(total, terms, local=True)
    elif name == "paper":
        phases = paper_phases(total, terms)
    else:
        raise ValueError(f"unknown schedule {name!r}; choose 'weightfree', 'weightfree-local' or 'paper'")
    return Schedule(phases, n_views, n_opt, views_per_step)
