"""Arguments every engine-client command shares (`--address`, CURVE keys, `--timeout`) and the client they
make. CURVE keys also come from SPLATBRUSH_SERVER_KEY / SPLATBRUSH_CLIENT_KEY."""

from __future__ import annotations

import argparse
import os

from shared_protocol.client import DEFAULT_ADDRESS, EngineClient


def add_client_args(p: argparse.ArgumentParser, timeout: float = 10.0) -> None:
    p.add_argument(
        "--address",
        default=os.environ.get("SPLATBRUSH_ADDRESS", DEFAULT_ADDRESS),
        help=f"engine address (default: {DEFAULT_ADDRESS}, or $SPLATBRUSH_ADDRESS)",
    )
    p.add_argument(
        "--server-key",
        default=os.environ.get("SPLATBRUSH_SERVER_KEY"),
        help="the engine's public .key file, for a CURVE engine (or $SPLATBRUSH_SERVER_KEY)",
    )
    p.add_argument(
        "--client-key",
        default=os.environ.get("SPLATBRUSH_CLIENT_KEY"),
        help="this client's .key_secret file, for a CURVE engine (or $SPLATBRUSH_CLIENT_KEY)",
    )
    p.add_argument(
        "--timeout", type=float, default=timeout, help=f"seconds to wait for answers ({timeout:g})"
    )


def make_client(args: argparse.Namespace) -> EngineClient:
    return EngineClient(
        args.address, server_public_key=args.server_key, client_keys=args.client_key, timeout=args.timeout
    )
