"""The outpainting schedule: phases, alpha and timestep maths, view order, presets."""

from __future__ import annotations

import pytest

from engine.stylize import PRESETS, StylizeConfig
from engine.stylize.schedule import (
    Phase,
    Schedule,
    Stage,
    build_schedule,
    global_alpha,
    local_alpha,
    paper_phases,
)


def test_paper_preset_step_ranges_follow_the_supplement():
    cfg = StylizeConfig.from_preset("paper")
    assert cfg.steps == 2800 and cfg.schedule == "paper"
    phases = paper_phases(cfg.steps, {g: 1.0 for g in cfg.guidance})
    assert [(p.start, p.end) for p in phases] == [
        (0, 100),
        (100, 600),
        (600, 1000),
        (1000, 1900),
        (1900, 2800),
    ]
    modes = [[s.mode for s in p.stages] for p in phases]
    assert modes == [
        ["global", "global"],
        ["local", "global"],
        ["global", "global"],
        ["global-fix", "global-free"],
        ["local"],
    ]
    # RGB only in the first 1000 steps, SDS terms alternate with it, then SDS only
    sched = Schedule(phases, n_views=8)
    rgb_steps = [s for s in range(2800) if "rgb" in sched.plan(s).losses]
    assert rgb_steps and max(rgb_steps) < 1000 and len(rgb_steps) == 500
    sds_steps = [s for s in range(2800) if "dssd" in sched.plan(s).losses]
    assert len(sds_steps) == 2800 - 500


def test_paper_phases_scale_to_other_totals():
    phases = paper_phases(280)
    assert [(p.start, p.end) for p in phases] == [(0, 10), (10, 60), (60, 100), (100, 190), (190, 280)]


def test_global_alpha_is_shared_by_a_round_of_views():
    n_views, n_opt = 4, 10
    assert [global_alpha(i, n_views, n_opt) for i in range(9)] == [0, 0, 0, 0, 0.1, 0.1, 0.1, 0.1, 0.2]
    assert global_alpha(4 * 10, n_views, n_opt) == 0.0  # wraps after n_opt rounds
    sched = build_schedule("weightfree", 20, n_views=4, n_opt=10)
    plans = [sched.plan(s) for s in range(8)]
    assert [p.view_ids for p in plans] == [[0], [1], [2], [3], [0], [1], [2], [3]]
    assert [p.alpha for p in plans] == [0, 0, 0, 0, 0.1, 0.1, 0.1, 0.1]


def test_local_mode_sweeps_each_view_before_the_next():
    n_opt = 5
    assert [local_alpha(i, n_opt) for i in range(7)] == [0, 0.2, 0.4, 0.6, 0.8, 0, 0.2]
    sched = Schedule([Phase("local", 0, 30, (Stage("l", "local", {"x": 1.0}),))], n_views=3, n_opt=n_opt)
    views = [sched.plan(s).view_ids[0] for s in range(16)]
    assert views == [0] * 5 + [1] * 5 + [2] * 5 + [0]


def test_views_per_step_batches_consecutive_views():
    sched = build_schedule("weightfree", 10, n_views=5, views_per_step=2)
    assert [sched.plan(s).view_ids for s in range(4)] == [[0, 1], [2, 3], [4, 0], [1, 2]]


def test_schedule_rejects_gaps_and_bad_modes():
    with pytest.raises(ValueError, match="tile"):
        Schedule([Phase("a", 0, 5, (Stage("s", "global"),)), Phase("b", 6, 9, (Stage("s", "global"),))], 3)
    with pytest.raises(ValueError, match="unknown mode"):
        Stage("s", "sideways")
    with pytest.raises(IndexError):
        build_schedule("weightfree", 5, n_views=2).plan(5)


def test_presets_build_and_overrides_apply():
    for name in PRESETS:
        StylizeConfig.from_preset(name)
    cfg = StylizeConfig.from_preset("fast", steps=7, size=None, seed=3)
    assert cfg.steps == 7 and cfg.size == PRESETS["fast"]["size"] and cfg.seed == 3
    assert StylizeConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown preset"):
        StylizeConfig.from_preset("slowest")
    with pytest.raises(ValueError, match="steps"):
        StylizeConfig.from_preset("fast", steps=0)
    with pytest.raises(ValueError, match="unknown StylizeConfig fields"):
        StylizeConfig.from_preset("fast", stepz=3)
