"""`splatbrush stylize SCENE --style IMG -o OUT.ply [--preset painterly|fast|paper|preview]
[--cameras FILE | --views N] [--size PX] [--steps N] [--seed S] [--device auto|cpu|cuda] [--style-strength S]
[--up AXIS] [--prompt TEXT] [--set KEY=VALUE ...] [--mask MASK.npy] [--checkpoint-dir DIR]`

Writes OUT.ply (the stylized scene) and beside it OUT.contact.png (original vs stylized views),
OUT.losses.png (loss curves) and OUT.report.json (settings, timings, loss history, metrics).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .settings import add_settings_arguments, job_settings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "stylize",
        help="stylize a splat scene with the look of a painting",
        description="Optimize the colours of a Gaussian splat scene so that its renders take the palette and "
        "brush texture of a style image; the geometry stays bit-identical. Writes OUT.ply and, beside it, "
        "OUT.contact.png, OUT.losses.png and OUT.report.json.",
    )
    formats = ".ply, .compressed.ply, .splat, .spz, .sog, .glb, .gltf"
    p.add_argument("scene", help=f"input scene ({formats}, meta.json of unbundled SOG)")
    p.add_argument("--style", required=True, help="style image (jpg/png)")
    p.add_argument("-o", "--output", required=True, help=f"output scene path ({formats})")
    views = p.add_mutually_exclusive_group()
    views.add_argument("--cameras", help="camera file (JSON list of cameras, INRIA cameras.json, ...)")
    add_settings_arguments(p, views=False)
    views.add_argument("--views", type=int, help="number of orbit views (default: the preset's)")
    p.add_argument(
        "--mask", help="partial stylization: .npy of N values in [0, 1] (0 keeps a Gaussian's colours)"
    )
    p.add_argument("--checkpoint-dir", help="save checkpoints here and resume from one if present")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from shared_protocol.splatfile.errors import SplatFileError
    from shared_protocol.splatfile.registry import format_for_output

    from ..cameras.io import load_cameras
    from ..imaging import load_image
    from ..scene.io import load_scene_with_extra
    from ..stylize import StylizeConfig, default_preset, stylize
    from ..stylize.outputs import write_outputs

    t0 = time.perf_counter()
    out = Path(args.output)
    try:
        format_for_output(out)
    except SplatFileError as e:
        raise ValueError(f"output {out.name!r}: {e.problem}") from None
    scene, extra = load_scene_with_extra(args.scene)
    style = load_image(args.style)
    cameras = load_cameras(args.cameras) if args.cameras else None
    load_s = time.perf_counter() - t0
    preset = args.preset or default_preset(args.device)
    config = StylizeConfig.from_settings(job_settings(args, preset), progress_bar=not args.quiet)
    print(
        f"stylize: {scene.num_gaussians} Gaussians, preset {preset}, {config.steps} steps at "
        f"{config.size} px, {len(cameras) if cameras else config.views} views",
        file=sys.stderr,
    )
    mask = load_mask(args.mask) if args.mask else None
    result = stylize(
        scene, style, cameras=cameras, config=config, checkpoint_dir=args.checkpoint_dir, mask=mask
    )
    result.report.setdefault("timings", {})["load"] = {"total_s": load_s, "calls": 1, "mean_s": load_s}
    paths = write_outputs(result, scene, style, out, extra=extra, backend=config.render_backend)
    print_summary(result, paths, t0)
    return 0


def print_summary(result, paths: dict, t0: float) -> None:
    """The metrics of a finished job, its output files, and the time since `t0` (perf_counter)."""
    m = result.report.get("metrics", {})
    if m:
        print(
            f"style distance {m['style_distance_stylized']:.2f} "
            f"(original {m['style_distance_original']:.2f}, ratio {m['style_distance_ratio']:.2f}; "
            f"lower is closer to the painting's palette), luminance SSIM {m['ssim_luminance']:.3f}"
        )
    for k, v in paths.items():
        print(f"{k}: {v}")
    print(f"done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)


def load_mask(path: str):
    """A per-Gaussian mask from a .npy file (N values in [0, 1], or bool)."""
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read mask {path!r}: {e} (expected a .npy of N values in [0, 1])") from None
