"""`splatbrush batch manifest.toml [--ray auto|local|ray://HOST:PORT | --local | --address A]`: run assets x
styles (x settings), resumably, and write <output>/index.html with before/after thumbnails, metrics, time and
node per combination. Without --ray/--local the jobs go to a running engine (`splatbrush serve`). See
docs/batch.md and engine/batch/manifest.py for the manifest format."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..server.cli_common import add_client_args

    p = subparsers.add_parser(
        "batch", help="run a manifest of assets x styles (engine, in-process or on Ray)", description=__doc__
    )
    p.add_argument("manifest", help="batch manifest (.toml)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--ray",
        nargs="?",
        const="manifest",
        metavar="ADDRESS",
        help="run every combination as a Ray task: auto (RAY_ADDRESS, else the cluster on this machine, else "
        "a new local one), local (a new local instance), ray://HOST:PORT (Ray Client); without a value: "
        "the manifest's [ray] address, else auto. Needs `pip install splatbrush[ray]`",
    )
    where.add_argument(
        "--local", action="store_true", help="run every combination in this process (no engine, no Ray)"
    )
    p.add_argument("--thumbnail-size", type=int, default=160, help="thumbnail size in px (0: no thumbnails)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (local and Ray)")
    add_client_args(p, timeout=60.0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from shared_protocol.client import DEFAULT_ADDRESS

    from ..batch import load_manifest, run_batch, run_local, run_ray
    from ..server.cli_common import make_client

    def log(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    manifest = load_manifest(args.manifest)
    progress = not args.no_progress
    if args.ray is not None:
        address = None if args.ray == "manifest" else args.ray
        state = run_ray(manifest, address, args.thumbnail_size, log, progress)
    elif args.local:
        state = run_local(manifest, args.thumbnail_size, log, progress)
    else:
        if manifest.address and args.address == DEFAULT_ADDRESS:
            args.address = manifest.address  # the manifest's engine unless --address says otherwise
        with make_client(args) as c:
            c.ping()
            state = run_batch(manifest, c, thumbnails=args.thumbnail_size, log=log)
    total = len(manifest.combos())
    done = sum(1 for c in manifest.combos() if state.get(c.key, {}).get("state") == "done")
    print(f"{done}/{total} done; summary: {manifest.output / 'index.html'}")
    return 0 if done == total else 1
