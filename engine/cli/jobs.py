"""`splatbrush jobs list|show ID [--json]|cancel ID|clean [ID ...]|adopt [ID ...] [--owner O]`: the jobs of an
engine."""

from __future__ import annotations

import argparse
import json
import time


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..server.cli_common import add_client_args

    p = subparsers.add_parser(
        "jobs", help="list, show, cancel or clean an engine's jobs", description=__doc__
    )
    sub = p.add_subparsers(dest="jobs_command", metavar="ACTION")
    sub.required = True
    for name, help_ in (
        ("list", "all jobs"),
        ("show", "one job"),
        ("cancel", "cancel a job"),
        ("clean", "delete finished jobs (all, or the given ids)"),
        ("adopt", "admin: give jobs stored before ownership existed an owner (all, or the given ids)"),
    ):
        s = sub.add_parser(name, help=help_)
        if name in ("show", "cancel"):
            s.add_argument("job_id")
        if name in ("clean", "adopt"):
            s.add_argument("job_ids", nargs="*")
        if name == "adopt":
            s.add_argument(
                "--owner",
                help="who gets them: a client's public .key file (CURVE), 'curve:<z85 key>', "
                "'user:<hash>' or 'anonymous' (default: you, the admin)",
            )
        if name in ("list", "show", "cancel"):
            s.add_argument("--json", action="store_true", help="machine-readable output")
        add_client_args(s)
        s.set_defaults(func=run)


def _line(j: dict) -> str:
    age = time.strftime("%Y-%m-%d %H:%M", time.localtime(j["created"]))
    err = f"  {j['error']}" if j.get("error") else ""
    return (
        f"{j['id']}  {j['state']:<9} {j['step']:>6}/{j['total_steps']:<6} "
        f"{j['settings'].get('preset', ''):<8} "
        f"{j['num_gaussians']:>9} G  {age}  {j['name']}{err}"
    )


def _owner(value: str | None) -> str | None:
    """An owner from the command line: a public .key file becomes "curve:<its key>"."""
    import os

    if value is None or not os.path.isfile(value):
        return value
    from shared_protocol.credentials import load_key

    return "curve:" + load_key(value, secret=False)[0].decode("ascii")


def run(args: argparse.Namespace) -> int:
    from ..server.cli_common import make_client

    with make_client(args) as c:
        if args.jobs_command == "list":
            jobs = c.list_jobs()
            if args.json:
                print(json.dumps(jobs, indent=1))
            else:
                for j in jobs:
                    print(_line(j))
                if not jobs:
                    print("no jobs")
        elif args.jobs_command in ("show", "cancel"):
            job = c.attach(args.job_id, watch=False)
            st = job.cancel() if args.jobs_command == "cancel" else job.status()
            print(json.dumps(st, indent=1) if args.json else _line(st))
        elif args.jobs_command == "clean":
            removed = c.clean(args.job_ids or None)
            print(f"removed {len(removed)} job(s)" + (": " + " ".join(removed) if removed else ""))
        elif args.jobs_command == "adopt":
            adopted = c.adopt(args.job_ids or None, _owner(args.owner))
            print(f"adopted {len(adopted)} job(s)" + "".join(f"\n{_line(j)}" for j in adopted))
    return 0
