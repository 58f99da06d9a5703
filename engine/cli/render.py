"""`splatbrush render FILE [--cameras FILE | --views N] [--size PX] -o DIR`: PNG per view + contact sheet."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

DEFAULT_VIEWS = 8
DEFAULT_ORBIT_SIZE = 256
SHEET_THUMB = 256  # contact-sheet thumbnails are at most this many pixels on the longer side
SHEET_COLUMNS = 6


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "render",
        help="render a splat file from orbit views or given cameras to PNGs",
        description="Render FILE to DIR/view_000.png, view_001.png, ... (in camera order), "
        "DIR/contact_sheet.png and DIR/cameras.json (the cameras used, INRIA format). Without --cameras, "
        "N orbit views around the scene's robust bounding box, in adjacency order.",
    )
    p.add_argument("file", help="a .ply, .compressed.ply or .splat file")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--cameras", metavar="FILE", help="cameras.json (INRIA), transforms.json (NeRF), .npz, ..."
    )
    src.add_argument("--views", type=int, metavar="N", help=f"orbit views (default {DEFAULT_VIEWS})")
    p.add_argument(
        "--size",
        type=int,
        metavar="PX",
        help=f"longer image side; orbit views are square (default {DEFAULT_ORBIT_SIZE}); "
        "with --cameras each camera keeps its own size unless --size is given",
    )
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "gsplat", "reference"))
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument(
        "--background", default="0,0,0", help="r,g,b in 0..1 (or 0..255), or 'black'/'white' (default black)"
    )
    p.add_argument(
        "--elevation",
        default="20",
        help="orbit elevation(s) in degrees, comma-separated: one ring each, serpentine order (default 20)",
    )
    p.add_argument(
        "--fov", type=float, default=50.0, help="orbit vertical field of view in degrees (default 50)"
    )
    p.add_argument(
        "--up", default=None, help="world up for orbits: +x,-x,+y,-y,+z,-z (default -y, COLMAP-style)"
    )
    p.set_defaults(func=run)


def parse_background(text: str) -> tuple[float, float, float]:
    named = {
        "black": (0.0, 0.0, 0.0),
        "white": (1.0, 1.0, 1.0),
        "gray": (0.5, 0.5, 0.5),
        "grey": (0.5, 0.5, 0.5),
    }
    if text.strip().lower() in named:
        return named[text.strip().lower()]
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--background must be r,g,b numbers or black/white/gray, got {text!r}") from None
    if len(values) != 3 or not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"--background must be three non-negative numbers r,g,b, got {text!r}")
    if max(values) > 1.0:
        if max(values) > 255.0:
            raise ValueError(f"--background values must be in 0..1 or 0..255, got {text!r}")
        values = [v / 255.0 for v in values]
    return values[0], values[1], values[2]


def parse_elevations(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--elevation must be comma-separated degrees, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ..cameras.io import load_cameras, save_cameras
    from ..cameras.orbit import orbit_cameras
    from ..imaging import contact_sheet, grid_rows, save_png
    from ..render import render
    from ..scene.io import load_scene

    if args.views is not None and args.views < 1:
        raise ValueError(f"--views must be at least 1, got {args.views}")
    if args.size is not None and args.size < 1:
        raise ValueError(f"--size must be at least 1 pixel, got {args.size}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    background = parse_background(args.background)
    out = Path(args.output)

    scene = load_scene(args.file, device=args.device)
    if args.cameras:
        cameras = load_cameras(args.cameras)
        if args.size is not None:
            cameras = [c.fit_to(args.size) for c in cameras]
    else:
        size = args.size or DEFAULT_ORBIT_SIZE
        cameras = orbit_cameras(
            scene,
            args.views or DEFAULT_VIEWS,
            size,
            size,
            parse_elevations(args.elevation),
            args.fov,
            args.up,
        )

    out.mkdir(parents=True, exist_ok=True)
    save_cameras(out / "cameras.json", cameras)
    thumbs = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for i, cam in enumerate(tqdm(cameras, desc="render", unit="view", file=sys.stderr)):
            image = render(scene, cam, background=background, backend=args.backend).image
            save_png(out / f"view_{i:03d}.png", image)
            thumbs.append(_thumbnail(image, SHEET_THUMB))
    seconds = time.perf_counter() - t0
    save_png(out / "contact_sheet.png", contact_sheet(grid_rows(thumbs, SHEET_COLUMNS)))
    print(
        f"rendered {len(cameras)} views of {len(scene)} Gaussians in {seconds:.1f} s "
        f"({seconds / len(cameras):.2f} s/view) to {out}/view_000.png ... and {out}/contact_sheet.png"
    )
    return 0


def _thumbnail(image, longest: int):
    """uint8 [h, w, 3] no larger than `longest` on its longer side."""
    import numpy as np
    from PIL import Image

    from ..imaging import to_uint8

    rgb = to_uint8(image)
    h, w = rgb.shape[:2]
    if max(h, w) <= longest:
        return rgb
    s = longest / max(h, w)
    small = Image.fromarray(rgb).resize(
        (max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS
    )
    return np.asarray(small)
