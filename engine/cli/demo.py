"""`splatbrush demo -o DIR [--preset P] [--steps N] [--size PX] [--views N] [--seed S] [--set KEY=VALUE ...]`

A real stylization that needs nothing but the engine: a procedurally built Gaussian object and a
procedurally painted style image (`engine.demo`). Writes into DIR:
    scene.ply, style.png            the inputs
    stylized.ply                    the result
    stylized.contact.png            original vs stylized views (with the style image)
    stylized.losses.png, stylized.report.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .settings import add_settings_arguments, job_settings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="stylize a generated demo object with a generated painting (no data or models needed)",
        description="Build a demo Gaussian object and a brush-stroke painting procedurally, stylize the "
        "object with the default preset (painterly: Magenta's learned style networks from a PyPI wheel; "
        "fast, the weight-free guidance, without it) and write inputs, result, contact sheet, loss curves "
        "and report into DIR.",
    )
    p.add_argument("-o", "--output", required=True, help="output folder (created)")
    add_settings_arguments(p)  # --preset (default: the default preset), --steps, --size, ...
    p.add_argument(
        "--gaussians", type=int, default=15000, help="Gaussians in the demo object (default: 15000)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..demo import demo_scene, demo_style_image
    from ..scene.io import save_scene
    from ..stylize import StylizeConfig, default_preset, stylize
    from ..stylize.outputs import write_outputs
    from .stylize import print_summary

    t0 = time.perf_counter()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if args.gaussians < 100:
        raise ValueError(f"--gaussians must be at least 100, got {args.gaussians}")
    n_sphere = args.gaussians // 5
    scene = demo_scene(n_torus=args.gaussians - n_sphere, n_sphere=n_sphere, seed=args.seed)
    style = demo_style_image(seed=args.seed)
    save_scene(scene, out / "scene.ply")
    Image.fromarray(style).save(out / "style.png")
    settings = job_settings(args, args.preset or default_preset(args.device))
    config = StylizeConfig.from_settings(settings, progress_bar=not args.quiet)
    print(
        f"demo: {scene.num_gaussians} Gaussians, {config.steps} steps at {config.size} px, "
        f"{config.views} views",
        file=sys.stderr,
    )
    result = stylize(scene, style, config=config)
    paths = write_outputs(result, scene, style, out / "stylized.ply", backend=config.render_backend)
    print_summary(result, paths, t0)
    return 0
