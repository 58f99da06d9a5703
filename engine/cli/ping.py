"""`splatbrush ping [--address A]`: exit 0 when an engine answers, 1 (with the reason) when none does."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..server.cli_common import add_client_args

    p = subparsers.add_parser("ping", help="check that an engine answers", description=__doc__)
    add_client_args(p, timeout=5.0)
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from shared_protocol.errors import EngineError

    from ..server.cli_common import make_client

    try:
        with make_client(args) as c:
            info = c.ping()
    except EngineError as e:
        print(f"splatbrush ping: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info))
    else:
        jobs = ", ".join(f"{n} {s}" for s, n in sorted(info["jobs"].items())) or "no jobs"
        print(
            f"{info['server']} at {args.address}: protocol v{info['version']}, {jobs}, "
            f"round trip {info['rtt_s'] * 1000:.1f} ms"
        )
    return 0
