"""`splatbrush keys generate [--dir DIR] [--name NAME]`: a CURVE key pair for an engine or a client."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..server.security import DEFAULT_KEY_DIR

    p = subparsers.add_parser(
        "keys", help="CURVE keys for engines reachable over a network", description=__doc__
    )
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION")
    sub.required = True
    g = sub.add_parser("generate", help="write NAME.key (public) and NAME.key_secret (private)")
    g.add_argument("--dir", default=str(DEFAULT_KEY_DIR), help=f"output folder (default: {DEFAULT_KEY_DIR})")
    g.add_argument(
        "--name", default="server", help="key name, e.g. server or the client's name (default: server)"
    )
    g.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..server.security import generate_keys

    public, secret = generate_keys(args.dir, args.name)
    print(f"public key: {public}\nsecret key: {secret} (keep it private)")
    print(
        "engine: splatbrush serve --address tcp://0.0.0.0:5557 --curve-secret-key SERVER.key_secret "
        "--authorized-keys DIR_WITH_CLIENT_.key_FILES"
    )
    print("client: --server-key SERVER.key --client-key CLIENT.key_secret")
    return 0
