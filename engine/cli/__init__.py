"""`splatbrush` command line. Each subcommand lives in its own module and registers itself in `COMMANDS`.

A subcommand module exposes `add_parser(subparsers)` which adds its parser and sets `func=run` where
`run(args) -> int` is the exit code. Keep them thin: they parse, call the engine API, print.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand module names under engine.cli, in the order `--help` lists them
COMMANDS = (
    "info",
    "render",
    "convert",
    "stylize",
    "evaluate",
    "demo",
    "serve",
    "ping",
    "submit",
    "jobs",
    "keys",
    "batch",
    "models",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="splatbrush", description="Stylize 3D Gaussian Splatting scenes.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"engine.cli.{name}").add_parser(sub)
    return parser


VALUE_OPTIONS_WITH_SIGNS = ("--up",)
"""Options whose value may start with "-" ("--up -y"): argparse would take "-y" for an option."""


def join_signed_values(argv: list[str]) -> list[str]:
    """["--up", "-y"] -> ["--up=-y"], so axis values with a sign parse as values."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in VALUE_OPTIONS_WITH_SIGNS and i + 1 < len(argv) and argv[i + 1][:1] in "-+":
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_signed_values(list(sys.argv[1:] if argv is None else argv)))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as e:  # our errors are ValueError/RuntimeError subclasses
        print(f"splatbrush {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
