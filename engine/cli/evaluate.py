"""`splatbrush evaluate ORIGINAL STYLED --style IMG [--views N] [--size PX] [--up AXIS] [--no-models]
[-o report.json]`

Prints (and optionally writes as JSON) the stylization metrics of `engine.metrics.evaluate_scenes`: the style
colour distance of both scenes and their ratio, the luminance SSIM, the multi-view consistency errors (short
and long range) of both scenes, whether the geometry is bit-identical, and the learned style score and
CLIP / CSD similarities when those networks are on this machine (skipped with a note otherwise).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="measure a stylized scene against its original and the style image",
        description="Render both scenes from orbit views and report: style colour distance (sliced "
        "Wasserstein in CIELAB, object pixels vs style pixels) for both and their ratio, luminance SSIM, "
        "multi-view consistency errors (colour difference of the same surface point in two views, from the "
        "rendered depth: nearest views and views ~90 degrees apart), whether the geometry is bit-identical, "
        "and the learned style score and CLIP / CSD similarities when those models are installed.",
    )
    p.add_argument("original", help="the unstylized scene")
    p.add_argument("styled", help="the stylized scene")
    p.add_argument("--style", required=True, help="the style image")
    p.add_argument("--views", type=int, default=8, help="orbit views (default: 8)")
    p.add_argument("--size", type=int, default=256, help="render size in pixels (default: 256)")
    p.add_argument("--up", help="scene up axis of the orbit views, as given to stylize (default -y)")
    p.add_argument(
        "--no-models", action="store_true", help="skip the network-based scores (Magenta style, CLIP, CSD)"
    )
    p.add_argument("--models-dir", help="local models folder (default: env SPLATBRUSH_MODELS, then HF cache)")
    p.add_argument("-o", "--output", help="also write the numbers to this JSON file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..imaging import load_image as load_style_image
    from ..metrics import evaluate_scenes
    from ..scene.io import load_scene

    if args.views < 1 or args.size < 16:
        raise ValueError(f"--views must be >= 1 and --size >= 16, got {args.views} and {args.size}")
    original = load_scene(args.original)
    styled = load_scene(args.styled)
    if original.num_gaussians != styled.num_gaussians:
        raise ValueError(
            f"the scenes differ in size ({original.num_gaussians} vs {styled.num_gaussians} Gaussians): "
            f"is {args.styled} a stylization of {args.original}?"
        )
    style = load_style_image(args.style)
    m = evaluate_scenes(
        original,
        styled,
        style,
        views=args.views,
        size=args.size,
        with_models=not args.no_models,
        models_dir=args.models_dir,
        up=args.up,
    )
    for k, v in m.items():
        if k == "notes":
            for note in v:
                print(f"note: {note}")
        else:
            print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
    if args.output:
        from ..stylize.outputs import write_report

        write_report(m, Path(args.output))
        print(f"report: {args.output}")
    return 0
