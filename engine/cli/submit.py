"""`splatbrush submit SCENE --style IMG [--preset P] [--wait -o OUT]`: send a job to an engine and print its
id; with --wait, follow its progress and write the stylized scene to OUT."""

from __future__ import annotations

import argparse
import sys

from shared_protocol import DEFAULT_PRESET


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..server.cli_common import add_client_args

    p = subparsers.add_parser("submit", help="send a stylization job to an engine", description=__doc__)
    p.add_argument("scene", help="input scene (.ply, .compressed.ply, .splat)")
    p.add_argument("--style", required=True, help="style image (jpg/png)")
    p.add_argument("--preset", default=DEFAULT_PRESET, help=f"settings preset (default: {DEFAULT_PRESET})")
    p.add_argument("--steps", type=int)
    p.add_argument("--size", type=int)
    p.add_argument("--views", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (the engine's), cpu, cuda, cuda:N")
    p.add_argument("--cameras", help="camera file (default: the engine picks orbit views)")
    p.add_argument("--name", default="", help="a label for `jobs list`")
    p.add_argument("--wait", action="store_true", help="wait for the job and fetch its result")
    p.add_argument("-o", "--output", help="with --wait: where to write the stylized scene (.ply or .splat)")
    add_client_args(p, timeout=30.0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from shared_protocol.splatfile import read_splats, write_splats

    from ..imaging import load_image as load_style_image
    from ..server.cli_common import make_client

    if args.wait and not args.output:
        raise ValueError("--wait needs -o OUT (where to write the stylized scene)")
    style = load_style_image(args.style)  # the small file first: its errors come before a big read
    cameras = None
    if args.cameras:
        from ..cameras.io import load_cameras

        cameras = [c.to_dict() for c in load_cameras(args.cameras)]
    settings = {
        "preset": args.preset,
        "steps": args.steps,
        "size": args.size,
        "views": args.views,
        "seed": args.seed,
        "device": args.device,
    }
    with make_client(args) as c:
        job = c.submit(
            read_splats(args.scene),
            style,
            cameras,
            settings,
            name=args.name,
            watch=args.wait,
        )
        print(job.id, flush=True)
        if not args.wait:
            return 0
        for ev in job.progress():
            if ev.kind == "progress":
                losses = " ".join(f"{k}={v:.4g}" for k, v in ev.losses.items())
                print(
                    f"\r{ev.state} {ev.step}/{ev.total_steps} {ev.phase} {losses}   ", end="", file=sys.stderr
                )
        print(file=sys.stderr)
        write_splats(job.result(), args.output)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0
