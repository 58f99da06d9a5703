"""`splatbrush batch manifest.toml [--address A]`: run assets x styles (x settings) through an engine,
resumably, and write <output>/index.html with before/after thumbnails and metrics. See
engine/server/batch.py for the manifest format."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..server.cli_common import add_client_args

    p = subparsers.add_parser(
        "batch", help="run a manifest of assets x styles through an engine", description=__doc__
    )
    p.add_argument("manifest", help="batch manifest (.toml)")
    p.add_argument("--thumbnail-size", type=int, default=160, help="thumbnail size in px (0: no thumbnails)")
    add_client_args(p, timeout=60.0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from shared_protocol.client import DEFAULT_ADDRESS

    from ..server.batch import load_manifest, run_batch
    from ..server.cli_common import make_client

    manifest = load_manifest(args.manifest)
    if manifest.address and args.address == DEFAULT_ADDRESS:
        args.address = manifest.address  # the manifest's engine unless --address says otherwise
    with make_client(args) as c:
        c.ping()
        state = run_batch(
            manifest, c, thumbnails=args.thumbnail_size, log=lambda m: print(m, file=sys.stderr, flush=True)
        )
    done = sum(1 for s in state.values() if s.get("state") == "done")
    print(f"{done}/{len(state)} done; summary: {manifest.output / 'index.html'}")
    return 0 if done == len(state) else 1
