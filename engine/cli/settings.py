"""The stylization settings every command that stylizes takes (stylize, demo, submit, batch):

    --preset fast|painterly|preview|paper   --steps N --size PX --views N --seed S --device D
    --style-strength 0..1         --up +z|-y|...   --prompt TEXT (DSSD's text prompt)
    --set KEY=VALUE (repeatable)  any StylizeConfig field or guidance option: --set lr=0.02,
                                  --set weightfree.color_weight=4, --set dssd.prompt="a donut"

`job_settings(args)` turns them into one `JobSettings` (the wire's form), and
`StylizeConfig.from_settings(job_settings(args))` is the job's config, for the CLI, the demo and the engine.
"""

from __future__ import annotations

import argparse
from typing import Any

from shared_protocol.payloads import JobSettings


def add_settings_arguments(p: argparse.ArgumentParser, views: bool = True, device: bool = True) -> None:
    from ..stylize.config import PRESETS

    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="settings preset (default: paper on a GPU with the models downloaded, else painterly)",
    )
    if views:
        p.add_argument("--views", type=int, help="number of orbit views (default: the preset's)")
    p.add_argument("--size", type=int, help="render size in pixels, longer side (default: the preset's)")
    p.add_argument("--steps", type=int, help="optimization steps (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    if device:
        p.add_argument(
            "--device",
            default="auto",
            help="torch device: auto, cpu, cuda, cuda:1 (default: auto = CUDA if present)",
        )
    p.add_argument(
        "--style-strength", type=float, help="how strongly the painting's style is applied, 0..1 (default 1)"
    )
    p.add_argument("--up", help="scene up axis for orbit views: +z (Blender-made), -y (COLMAP, the default)")
    p.add_argument("--prompt", help="text prompt of the diffusion guidance (DSSD), e.g. 'a donut'")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other setting: a StylizeConfig field (lr=0.02) or a guidance option "
        "(weightfree.color_weight=4, dssd.prompt='a donut'); repeatable",
    )


def parse_sets(items: list[str]) -> dict[str, Any]:
    """["a=1", "b.c=x"] -> {"a": "1", "b.c": "x"} (values are parsed against the field types later)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


def job_settings(args: argparse.Namespace, preset: str) -> JobSettings:
    """The parsed settings arguments as JobSettings (validated by building the config)."""
    from ..stylize.config import StylizeConfig

    overrides = parse_sets(getattr(args, "set", []) or [])
    if getattr(args, "style_strength", None) is not None:
        overrides["style_strength"] = args.style_strength
    if getattr(args, "up", None):
        overrides["up"] = args.up
    if getattr(args, "prompt", None):
        overrides["dssd.prompt"] = args.prompt
    settings = JobSettings(
        preset=preset,
        steps=getattr(args, "steps", None),
        size=getattr(args, "size", None),
        views=getattr(args, "views", None),
        seed=getattr(args, "seed", 0) or 0,
        device=getattr(args, "device", "auto") or "auto",
        overrides=overrides,
    )
    StylizeConfig.from_settings(settings)  # a bad key or value fails here, naming it
    return settings
