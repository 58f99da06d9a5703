"""Helpers for the server tests: engines in a thread or in a subprocess on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from engine.server import EngineServer, ServerConfig, SyntheticRunner
from shared_protocol.client import EngineClient
from shared_protocol.credentials import TOKEN_ENV
from shared_protocol.errors import EngineUnavailable
from shared_protocol.splatfile import SplatArrays

REPO = Path(__file__).resolve().parents[1]
# this test session's own client token (engines in threads and subprocesses see it too): the user's real
# ~/.config/splatbrush/client.token is left alone, and every client here is the engine user, so admin
os.environ.setdefault(TOKEN_ENV, os.path.join(tempfile.mkdtemp(prefix="splatbrush-test-"), "client.token"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_arrays(n: int = 40, k: int = 4, seed: int = 0) -> SplatArrays:
    r = np.random.default_rng(seed)
    return SplatArrays(
        means=r.normal(size=(n, 3)).astype(np.float32),
        quats=r.normal(size=(n, 4)).astype(np.float32),
        log_scales=(r.normal(size=(n, 3)) - 3).astype(np.float32),
        opacity_logits=r.normal(size=n).astype(np.float32),
        sh=r.normal(size=(n, k, 3)).astype(np.float32),
    )


STYLE = np.random.default_rng(5).integers(0, 255, (16, 16, 3), dtype=np.uint8)


class ThreadedEngine:
    """An EngineServer running its loop in a daemon thread (synthetic runner unless given one)."""

    def __init__(self, state_dir: Path, runner=None, **config):
        config.setdefault("address", "tcp://127.0.0.1:0")
        config.setdefault("heartbeat_s", 0.5)
        self.server = EngineServer(
            ServerConfig(state_dir=str(state_dir), **config), runner or SyntheticRunner()
        )
        self.server.start()
        self.address = self.server.bound_address
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def client(self, **kw) -> EngineClient:
        kw.setdefault("timeout", 5.0)
        return EngineClient(self.address, **kw)

    def stop(self) -> None:
        self.server.request_stop()
        self.thread.join(10)
        assert not self.thread.is_alive(), "engine loop did not stop"


def start_engine_process(state_dir: Path, port: int, *extra: str) -> subprocess.Popen:
    """`splatbrush serve` in a subprocess; returns once it answers ping."""
    cmd = [
        sys.executable,
        "-m",
        "engine",
        "serve",
        "--address",
        f"tcp://127.0.0.1:{port}",
        "--state-dir",
        str(state_dir),
        *extra,
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"engine exited early ({proc.returncode}): {proc.stdout.read()}")
        try:
            with EngineClient(f"tcp://127.0.0.1:{port}", timeout=0.5) as c:
                c.ping()
            return proc
        except EngineUnavailable:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("engine did not answer within 60 s")


@contextlib.contextmanager
def pinging(engine, every_s: float = 0.005):
    """Another client pings `engine` (a ThreadedEngine) in a thread while the block runs; yields the list of
    round-trip times in seconds, filled as they come (the first ping, which connects, is not counted)."""
    lat: list[float] = []
    stop = threading.Event()

    def run():
        with engine.client() as c:
            c.ping()
            while not stop.is_set():
                t = time.perf_counter()
                c.ping()
                lat.append(time.perf_counter() - t)
                time.sleep(every_s)

    th = threading.Thread(target=run)
    th.start()
    time.sleep(0.3)
    try:
        yield lat
        time.sleep(0.1)
    finally:
        stop.set()
        th.join(30)
