"""Soak test of the engine (issue 11): many clients at once, slow readers asking for big results and reading
nothing, oversized and crafted messages, uploads begun and never finished, submits both in one message and
in chunks (protocol 2), and kill -9 of the engine at random moments; asserts that its RSS
stays bounded and that no acknowledged job is lost (or doubled: submits are retried with their idempotency
key). Runs its own engine (synthetic runner) in a subprocess. Takes about --seconds plus ~20 s.

    .venv/bin/python benchmarks/bench_soak.py [--clients 200] [--seconds 60] [--kills 3]
    .venv/bin/python benchmarks/bench_soak.py --latency 1000000   # another client's ping during a submit
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import zmq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared_protocol.client import EngineClient  # noqa: E402
from shared_protocol.credentials import load_token  # noqa: E402
from shared_protocol.errors import EngineError  # noqa: E402
from shared_protocol.messages import Hello, ListJobs, Ping, Result, encode_message  # noqa: E402
from shared_protocol.splatfile import SplatArrays  # noqa: E402
from shared_protocol.transfer import ResultChunk, UploadBegin  # noqa: E402

MB = 1 << 20
ENGINE = """
import faulthandler, logging, signal, sys
faulthandler.register(signal.SIGUSR1)  # the soak dumps the engine's threads when its queue stalls
from engine.server import EngineServer, ServerConfig, SyntheticRunner
logging.basicConfig(level=logging.WARNING)
cfg = ServerConfig(address=sys.argv[1], state_dir=sys.argv[2], max_message_bytes=int(sys.argv[3]),
                   client_queue_bytes=32 << 20, total_queue_bytes=256 << 20, heartbeat_s=1.0)
s = EngineServer(cfg, SyntheticRunner(step_s=0.02, checkpoint_every=5))
s.start()
s.serve_forever()
"""


def scene(n: int, seed: int = 0) -> SplatArrays:
    r = np.random.default_rng(seed)
    return SplatArrays(
        means=r.normal(size=(n, 3)).astype(np.float32),
        quats=r.normal(size=(n, 4)).astype(np.float32),
        log_scales=(r.normal(size=(n, 3)) - 3).astype(np.float32),
        opacity_logits=r.normal(size=n).astype(np.float32),
        sh=r.normal(size=(n, 4, 3)).astype(np.float32),
    )


STYLE = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)


class Engine:
    def __init__(self, state: Path, port: int, max_message_bytes: int = 16 * MB):
        self.state, self.address = state, f"tcp://127.0.0.1:{port}"
        self.max_message_bytes = max_message_bytes
        self.proc: subprocess.Popen | None = None
        self.peak_rss = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ENGINE, self.address, str(self.state), str(self.max_message_bytes)],
            cwd=REPO,
            env=os.environ.copy(),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with EngineClient(self.address, timeout=0.5) as c:
                    c.ping()
                return
            except EngineError:
                time.sleep(0.2)
        raise RuntimeError("engine did not start")

    def rss(self) -> int:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except (OSError, AttributeError):
            pass
        return 0

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def noisy_clients(address: str, n: int, big_job: str, token: str, stop: threading.Event, stats: dict) -> None:
    """`n` raw DEALER sockets in one thread: pings, lists, results they never read (slow readers: whole
    results of protocol 1 and 8 MiB result chunks), uploads begun and never sent, headers declaring 10 GB,
    garbage frames; now and then a 72 MiB message (9 frames of 8 MiB) over the 16 MiB message limit, or a
    single 24 MiB frame over the one-chunk frame limit (libzmq drops that connection; zmq reconnects)."""
    ctx = zmq.Context()
    socks = []
    for _ in range(n):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 50)
        s.setsockopt(zmq.RCVHWM, 10)  # slow readers: they keep almost nothing on their side
        s.connect(address)
        socks.append(s)
    rng = random.Random(0)
    hello = encode_message(Hello([1, 2], "soak", token=token), rid="h")  # they may fetch the big result
    head = b'{"proto":"splatbrush","v":2,"type":"submit","rid":"x","body":{},"arrays":[]}'
    oversized = [head] + [np.zeros(8 * MB, np.uint8).data] * 9  # 72 MiB, frames under the frame limit
    big_frame = [head, np.zeros(24 * MB, np.uint8).data]
    crafted = [
        [
            b'{"proto":"splatbrush","v":1,"type":"submit","rid":"c","body":{},"arrays":[{"name":"g.means",'
            b'"dtype":"<f4","shape":[100000000000,3],"frames":1}]}'
        ],
        [b"\xff\xfe not json"],
        [b'{"proto":"splatbrush","v":1,"type":"ping","rid":"d","body":{},"arrays":[]}', b"extra frame"],
    ]
    for s in socks:
        s.send_multipart(hello, zmq.NOBLOCK)
    last_big = 0.0
    while not stop.is_set():
        for i, s in enumerate(socks):
            kind = rng.random()
            try:
                if kind < 0.3:
                    s.send_multipart(encode_message(Ping(), rid=uuid.uuid4().hex[:8]), zmq.NOBLOCK)
                elif kind < 0.4:
                    s.send_multipart(encode_message(Result(big_job), rid="r"), zmq.NOBLOCK)
                elif kind < 0.5:
                    part = ResultChunk(big_job, rng.randrange(0, 4) * MB, 8 * MB)
                    s.send_multipart(encode_message(part, rid="rc"), zmq.NOBLOCK)
                elif kind < 0.6:
                    s.send_multipart(encode_message(ListJobs(), rid="l"), zmq.NOBLOCK)
                elif kind < 0.65:
                    s.send_multipart(rng.choice(crafted), zmq.NOBLOCK)
                elif kind < 0.7:
                    s.send_multipart(encode_message(UploadBegin(100 * MB), rid="u"), zmq.NOBLOCK)
                elif kind < 0.71 and time.monotonic() - last_big > 3.0:
                    s.send_multipart(rng.choice([oversized, big_frame]), zmq.NOBLOCK, copy=False)
                    last_big = time.monotonic()
                stats["sent"] += 1
            except zmq.Again:
                stats["blocked"] += 1
            if i % 2 == 0:  # half of them read now and then, the other half never do
                while s.poll(0):
                    s.recv_multipart()
                    stats["read"] += 1
        time.sleep(0.05)
    for s in socks:
        s.close(0)
    ctx.term()


def submitter(address: str, k: int, stop: threading.Event, acked: dict, lock: threading.Lock) -> None:
    """Submits with idempotency keys, retried across engine restarts; submitter 0 sends 100k-200k Gaussians
    (9-18 MB: chunked uploads), the others up to 3000 (one message)."""
    rng = np.random.default_rng(k)
    with EngineClient(address, timeout=3.0) as c:
        while not stop.is_set():
            key = f"soak-{k}-{uuid.uuid4().hex[:12]}"
            n = int(rng.integers(100_000, 200_000)) if k == 0 else int(rng.integers(100, 3000))
            g = scene(n, seed=k)
            for _ in range(20):  # across an engine restart: the same key, so never a second job
                try:
                    job = c.submit(g, STYLE, settings={"steps": 10}, idempotency_key=key, watch=False)
                    with lock:
                        acked[key] = job.id
                    break
                except EngineError:
                    time.sleep(0.5)
            time.sleep(0.2)


def latency(n: int) -> None:
    """Another client's ping round trip while one client submits `n` SH3 Gaussians and fetches the result."""
    tmp = Path(tempfile.mkdtemp(prefix="splatbrush-lat-"))
    os.environ["SPLATBRUSH_TOKEN_FILE"] = str(tmp / "client.token")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    eng = Engine(tmp / "state", port)
    eng.start()
    g = scene(n)
    g.sh = np.random.default_rng(2).normal(size=(n, 16, 3)).astype(np.float32)
    lat: list[float] = []
    stop = threading.Event()

    def pinger() -> None:
        with EngineClient(eng.address, timeout=30) as c:
            c.ping()
            while not stop.is_set():
                t = time.perf_counter()
                c.ping()
                lat.append(time.perf_counter() - t)
                time.sleep(0.01)

    th = threading.Thread(target=pinger)
    th.start()
    time.sleep(0.5)
    with EngineClient(eng.address, timeout=120) as c:
        t0 = time.perf_counter()
        job = c.submit(g, STYLE, settings={"steps": 1}, watch=False)
        t1 = time.perf_counter()
        job.wait(timeout=120)
        t2 = time.perf_counter()
        job.result()
        t3 = time.perf_counter()
    time.sleep(0.3)
    stop.set()
    th.join()
    eng.proc.terminate()
    eng.proc.wait(30)
    a = np.array(lat) * 1000
    print(
        f"{n} Gaussians ({g.sh.nbytes * 59 / 48 / MB:.0f} MB): submit {t1 - t0:.2f} s, result {t3 - t2:.2f} s"
    )
    print(
        f"pings meanwhile: {len(a)}, max {a.max():.0f} ms, p99 {np.percentile(a, 99):.0f} ms, "
        f"median {np.median(a):.1f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--rss-limit-mb", type=float, default=1200.0)
    ap.add_argument("--latency", type=int, metavar="N", help="only measure ping latency during an N submit")
    args = ap.parse_args()
    if args.latency:
        latency(args.latency)
        return
    tmp = Path(tempfile.mkdtemp(prefix="splatbrush-soak-"))
    os.environ["SPLATBRUSH_TOKEN_FILE"] = str(tmp / "client.token")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    eng = Engine(tmp / "state", port)
    eng.start()
    with EngineClient(eng.address, timeout=30) as c:  # a done job with a 9 MB result for the slow readers
        big = c.submit(scene(200_000), STYLE, settings={"steps": 1}, watch=False)
        big.wait(timeout=60)
    base = eng.rss()
    stop, lock = threading.Event(), threading.Lock()
    acked: dict[str, str] = {}
    stats = {"sent": 0, "blocked": 0, "read": 0}
    threads = [
        threading.Thread(
            target=noisy_clients, args=(eng.address, args.clients - 4, big.id, load_token(), stop, stats)
        )
    ]
    threads += [
        threading.Thread(target=submitter, args=(eng.address, k, stop, acked, lock)) for k in range(4)
    ]
    for t in threads:
        t.start()
    rng = random.Random(7)
    kill_at = sorted(rng.uniform(0.15, 0.85) * args.seconds for _ in range(args.kills))
    t0, peaks = time.monotonic(), []
    peak = 0
    while time.monotonic() - t0 < args.seconds:
        peak = max(peak, eng.rss())
        if kill_at and time.monotonic() - t0 >= kill_at[0]:
            kill_at.pop(0)
            peaks.append(peak)
            eng.kill9()
            print(f"  t={time.monotonic() - t0:5.1f} s: kill -9 (peak RSS {peak / MB:.0f} MB), restarting")
            eng.start()
            peak = 0
        time.sleep(0.1)
    peaks.append(peak)
    stop.set()
    for t in threads:
        t.join(60)
    with EngineClient(eng.address, timeout=30) as c:
        t1 = time.monotonic()
        while time.monotonic() < t1 + 120:
            jobs = c.list_jobs()
            if all(j["state"] in ("done", "failed", "cancelled") for j in jobs):
                break
            time.sleep(0.5)
        left = [j for j in jobs if j["state"] not in ("done", "failed", "cancelled")]
        if left:
            print(f"  {len(left)} jobs not finished 120 s after the load stopped, e.g. {left[0]}")
            eng.proc.send_signal(signal.SIGUSR1)
            time.sleep(1)
        else:
            print(f"  all jobs finished {time.monotonic() - t1:.1f} s after the load stopped")
        ids = {j["id"]: j for j in jobs}
    eng.proc.terminate()
    eng.proc.wait(30)
    lost = [k for k, j in acked.items() if j not in ids]
    keys = [
        json.loads((tmp / "state" / "jobs" / j / "config.json").read_text()).get("idempotency_key")
        for j in ids
    ]
    doubled = len([k for k in keys if k]) - len({k for k in keys if k})
    states: dict[str, int] = {}
    for j in ids.values():
        states[j["state"]] = states.get(j["state"], 0) + 1
    print(
        f"clients {args.clients}, {args.seconds:.0f} s, {args.kills} kill -9; messages sent {stats['sent']}, "
        f"blocked (client HWM) {stats['blocked']}, replies read {stats['read']}"
    )
    print(f"engine RSS: base {base / MB:.0f} MB, peak per run {[round(p / MB) for p in peaks]} MB")
    print(f"jobs acknowledged {len(acked)}, lost {len(lost)}, doubled {doubled}; final states {states}")
    ok = not lost and not doubled and max(peaks) < args.rss_limit_mb * MB
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
