"""Protocol benchmark: a 1M-Gaussian scene uploaded to the engine in chunks (protocol 2, written to the
engine's disk as it arrives) against raw zmq moving the same bytes, submit and result latency, progress events
per second. Runs its own engine (`serve --runner synthetic`) in a subprocess.

    .venv/bin/python benchmarks/bench_protocol.py [--gaussians 1000000] [--sh-degree 3]
"""

from __future__ import annotations

import argparse
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from shared_protocol import transfer
from shared_protocol.client import EngineClient
from shared_protocol.errors import EngineUnavailable
from shared_protocol.messages import splat_to_arrays
from shared_protocol.splatfile import SplatArrays

REPO = Path(__file__).resolve().parents[1]


def scene(n: int, sh_degree: int, seed: int = 0) -> SplatArrays:
    r = np.random.default_rng(seed)
    k = (sh_degree + 1) ** 2
    return SplatArrays(
        means=r.normal(size=(n, 3)).astype(np.float32),
        quats=r.normal(size=(n, 4)).astype(np.float32),
        log_scales=r.normal(-3, 1, size=(n, 3)).astype(np.float32),
        opacity_logits=r.normal(size=n).astype(np.float32),
        sh=r.normal(size=(n, k, 3)).astype(np.float32),
    )


def start_engine(state: str, *extra: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = f"tcp://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "engine",
        "serve",
        "--address",
        addr,
        "--state-dir",
        state,
        "--runner",
        "synthetic",
        "--synthetic-step-s",
        "0",
        "--checkpoint-every",
        "1000000",
        *extra,
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            with EngineClient(addr, timeout=0.5) as c:
                c.ping()
            return proc, addr
        except EngineUnavailable:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("engine did not start")


def raw_floor(arrays: dict[str, np.ndarray], repeats: int) -> float:
    """Best time to move the same bytes there and back over raw zmq PAIR sockets on loopback (16 MiB
    frames, no header, no validation): the floor the protocol round trip is compared against."""
    import zmq

    from shared_protocol.codec import encode

    frames = encode("ping", {}, arrays)[1:]
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    port = a.bind_to_random_port("tcp://127.0.0.1")
    b.connect(f"tcp://127.0.0.1:{port}")
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for src, dst in ((a, b), (b, a)):
            for i, f in enumerate(frames):
                src.send(f, zmq.SNDMORE if i < len(frames) - 1 else 0, copy=False)
            dst.recv_multipart(copy=False)
        best = min(best, time.perf_counter() - t0)
    a.close(0)
    b.close(0)
    ctx.term()
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gaussians", type=int, default=1_000_000)
    ap.add_argument("--sh-degree", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-guard", action="store_true", help="the engine without its ZMTP guard (its cost)")
    args = ap.parse_args()

    g = scene(args.gaussians, args.sh_degree)
    arrays = splat_to_arrays(g)
    mb = sum(a.nbytes for a in arrays.values()) / 1e6
    style = np.random.default_rng(1).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as state:
        proc, addr = start_engine(state, *(["--no-guard"] if args.no_guard else []))
        try:
            with EngineClient(addr, timeout=30) as c:
                # 1. the scene's chunked upload (no commit: the upload expires), against raw zmq
                times = []
                for _ in range(args.repeats):  # each from a client of its own (2 open uploads each)
                    with EngineClient(addr, timeout=30, token=secrets.token_hex(16)) as u:
                        u.hello()
                        t0 = time.perf_counter()
                        transfer.upload(u, arrays, 200e6)
                        times.append(time.perf_counter() - t0)
                up = statistics.median(times)
                print(
                    f"upload {args.gaussians} Gaussians (SH {args.sh_degree}, {mb:.0f} MB) in chunks to the "
                    f"engine's disk: median {up:.3f} s, best {min(times):.3f} s ({mb / 1e3 / up:.2f} GB/s)"
                )
                floor = raw_floor(arrays, args.repeats)
                print(f"  floor: raw zmq PAIR moving the same bytes there and back: best {floor:.3f} s")

                # 2. submit latency: small scene (10k) and the big one (includes writing the inputs to disk)
                small = scene(10_000, args.sh_degree, seed=2)
                lat = []
                for _ in range(10):
                    t0 = time.perf_counter()
                    c.submit(small, style, settings={"steps": 1}, watch=False)
                    lat.append(time.perf_counter() - t0)
                print(f"submit latency 10k Gaussians: median {statistics.median(lat) * 1e3:.1f} ms")
                t0 = time.perf_counter()
                big = c.submit(g, style, settings={"steps": 1}, watch=False)
                t_big = time.perf_counter() - t0
                big.wait(timeout=120)
                t0 = time.perf_counter()
                res = big.result()
                t_res = time.perf_counter() - t0
                assert res.num_gaussians == args.gaussians
                print(
                    f"submit {args.gaussians} Gaussians: {t_big:.3f} s (persisted); "
                    f"result fetch {t_res:.3f} s"
                )

                # 3. progress events per second (the synthetic runner does no work per step)
                job = c.submit(small, style, settings={"steps": 20_000})
                n, t_first = 0, None
                for ev in job.progress(timeout=120):
                    if ev.kind == "progress" and ev.state == "running":
                        n += 1
                        t_first = t_first or time.perf_counter()
                t_all = time.perf_counter() - (t_first or time.perf_counter())
                print(
                    f"progress events: {n} received in {t_all:.2f} s = {n / max(t_all, 1e-9):.0f} events/s "
                    f"(plus a preview every 5 steps)"
                )
                c.shutdown()
        finally:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
