"""`splatbrush serve [--address A] [--state-dir DIR] [--device D] [--workers N | --devices LIST]`: run the
engine until SIGTERM/Ctrl-C."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..server.server import DEFAULT_ADDRESS, DEFAULT_STATE_DIR, ServerConfig

    d = ServerConfig()
    p = subparsers.add_parser(
        "serve",
        help="run the engine server (jobs over ZeroMQ)",
        description="Run the Splatbrush engine: clients (Blender, scripts, `splatbrush submit`) send jobs "
        "over ZeroMQ. Binds 127.0.0.1 by default; any other address needs CURVE keys (`splatbrush keys "
        "generate`). Jobs persist in --state-dir and resume from their last checkpoint after a restart.",
    )
    p.add_argument("--address", default=DEFAULT_ADDRESS, help=f"bind address (default: {DEFAULT_ADDRESS})")
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help=f"job store folder ({DEFAULT_STATE_DIR})")
    p.add_argument("--device", default="auto", help="device for jobs: auto (cuda if present), cpu, cuda:N")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="jobs run at once, each worker on --device (default 1); on CPU the cores are split between "
        "them (torch threads = cores / workers)",
    )
    p.add_argument(
        "--devices",
        help="one worker per device instead, comma-separated (cuda:0,cuda:1,...); 'auto': every visible "
        "GPU, else one CPU worker. Queued jobs go to the first free worker; a job asking for one of these "
        "devices waits for its worker",
    )
    p.add_argument("--curve-secret-key", help="the engine's .key_secret file (switches CURVE on)")
    p.add_argument("--authorized-keys", help="folder of the public .key files of clients allowed in")
    p.add_argument("--admin-keys", help="folder of the public .key files of admin clients (CURVE)")
    p.add_argument("--admin-token-file", help="loopback: the admin token file (default: the engine user's)")
    p.add_argument("--max-job-memory-gb", type=float, help="refuse jobs estimated above this (default: RAM)")
    p.add_argument("--max-job-hours", type=float, default=d.max_job_seconds / 3600)
    p.add_argument("--client-queue-mb", type=int, default=d.client_queue_bytes // 2**20)
    p.add_argument("--total-queue-mb", type=int, default=d.total_queue_bytes // 2**20)
    p.add_argument("--max-gaussians", type=int, default=d.max_gaussians)
    p.add_argument("--max-resolution", type=int, default=d.max_resolution)
    p.add_argument("--max-steps", type=int, default=d.max_steps)
    p.add_argument(
        "--max-message-mb",
        type=int,
        default=d.max_message_bytes // 2**20,
        help="one message (protocol 2 sends anything bigger in chunks)",
    )
    p.add_argument(
        "--max-upload-mb",
        type=int,
        default=d.max_upload_bytes // 2**20,
        help="one submit's scene and style, uploaded in chunks",
    )
    p.add_argument(
        "--no-guard",
        action="store_true",
        help="plain tcp engines: bind the ROUTER directly instead of behind the ZMTP guard that bounds every "
        "message before libzmq buffers it (docs/server.md)",
    )
    p.add_argument("--checkpoint-every", type=int, help="checkpoint every N steps (default: the preset's)")
    p.add_argument(
        "--runner",
        default="stylize",
        choices=("stylize", "synthetic"),
        help="what jobs run; 'synthetic' is a fake for protocol tests and benchmarks",
    )
    p.add_argument("--synthetic-step-s", type=float, default=0.02, help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import sys

    from ..server.runners import StylizeRunner, SyntheticRunner
    from ..server.server import EngineServer, ServerConfig

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = ServerConfig(
        address=args.address,
        state_dir=args.state_dir,
        device=args.device,
        workers=args.workers,
        devices=args.devices.split(",") if args.devices else None,
        curve_secret_key=args.curve_secret_key,
        authorized_keys=args.authorized_keys,
        max_gaussians=args.max_gaussians,
        max_resolution=args.max_resolution,
        max_steps=args.max_steps,
        max_message_bytes=args.max_message_mb * 2**20,
        max_upload_bytes=args.max_upload_mb * 2**20,
        guard=not args.no_guard,
        admin_keys=args.admin_keys,
        admin_token_file=args.admin_token_file,
        max_job_memory_bytes=None if args.max_job_memory_gb is None else int(args.max_job_memory_gb * 2**30),
        max_job_seconds=args.max_job_hours * 3600,
        client_queue_bytes=args.client_queue_mb * 2**20,
        total_queue_bytes=args.total_queue_mb * 2**20,
    )
    if args.runner == "synthetic":
        runner = SyntheticRunner(step_s=args.synthetic_step_s, checkpoint_every=args.checkpoint_every or 5)
    else:
        runner = StylizeRunner(args.device, checkpoint_every=args.checkpoint_every)
    try:
        server = EngineServer(config, runner)
    except ValueError as e:  # --workers/--devices
        print(f"splatbrush serve: {e}", file=sys.stderr)
        return 2
    server.start()
    where = f"state: {server.store.root}"
    if len(server.pool) > 1:
        where += f", {len(server.pool)} workers: {', '.join(server.pool.devices)}"
    print(f"splatbrush engine listening on {server.bound_address} ({where})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.request_stop()
    return 0
