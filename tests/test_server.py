"""Engine server against live clients (in-process engine, synthetic runner): jobs, events, cancel, limits,
two clients, security."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest
from server_helpers import STYLE, ThreadedEngine, make_arrays

from engine.server import SecurityError, ServerConfig, SyntheticRunner, generate_keys
from engine.server.runners import JobInputs
from engine.server.server import EngineServer
from shared_protocol.client import EngineClient
from shared_protocol.errors import EngineUnavailable, JobCancelled, RemoteError
from shared_protocol.messages import JobSettings


@pytest.fixture
def engine(tmp_path):
    e = ThreadedEngine(tmp_path / "state", SyntheticRunner(step_s=0.01))
    yield e
    e.stop()


def expected_result(g, steps, seed):
    """What the synthetic runner computes, run directly (no server, no checkpoints)."""
    out = SyntheticRunner(step_s=0, checkpoint_every=0).run(
        JobInputs(g, STYLE, None, JobSettings(steps=steps, seed=seed), {}),
        lambda ev: None,
        lambda: False,
        __import__("pathlib").Path("/nonexistent-unused"),
    )
    return out.gaussians


def test_submit_progress_result(engine):
    g = make_arrays()
    with engine.client() as c:
        info = c.ping()
        assert info["version"] == 2 and "synthetic" in info["server"]
        job = c.submit(g, STYLE, settings={"steps": 12, "seed": 4}, name="t")
        events = list(job.progress(timeout=20))
        steps = [e.step for e in events if e.kind == "progress" and e.state == "running"]
        assert steps == sorted(steps) and 12 in steps
        assert events[-1].state == "done"
        assert any(e.kind == "preview" and e.preview.shape == (8, 8, 3) for e in events)
        out = job.result(timeout=10)
        assert np.array_equal(out.sh, expected_result(g, 12, 4).sh)
        assert np.array_equal(out.means, g.means)
        assert job.report["runner"] == "synthetic"
        st = job.status()
        assert (
            {"id", "state", "step", "total_steps"} <= set(st) and st["state"] == "done" and st["step"] == 12
        )
        assert [j["id"] for j in c.list_jobs()] == [job.id]


def test_poll_never_blocks_and_collects_events(engine):
    with engine.client() as c:
        job = c.submit(make_arrays(), STYLE, settings={"steps": 10})
        seen, slowest = [], 0.0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(e.state == "done" for e in seen):
            t = time.perf_counter()
            seen += job.poll()
            slowest = max(slowest, time.perf_counter() - t)
            time.sleep(0.01)
        assert any(e.state == "done" for e in seen)
        assert slowest < 0.05, f"poll() took {slowest:.3f} s"
        assert job.poll() == []


def test_cancel_running_and_queued(tmp_path):
    e = ThreadedEngine(tmp_path / "s", SyntheticRunner(step_s=0.05))
    try:
        with e.client() as c:
            running = c.submit(make_arrays(), STYLE, settings={"steps": 1000})
            queued = c.submit(make_arrays(), STYLE, settings={"steps": 5})
            while running.status()["step"] < 2:
                time.sleep(0.02)
            assert queued.cancel()["state"] == "cancelled"
            t0 = time.monotonic()
            running.cancel()
            st = running.wait(timeout=5, poll_interval=0.01)
            assert st["state"] == "cancelled" and st["step"] < 1000
            assert time.monotonic() - t0 < 0.5  # within about one step (50 ms) plus messaging
            with pytest.raises(JobCancelled):
                running.result()
            with pytest.raises(RemoteError, match="cancelled"):  # results only for done jobs
                c._request(__import__("shared_protocol.messages", fromlist=["Result"]).Result(running.id))
    finally:
        e.stop()


def test_two_clients_at_once(engine):
    g1, g2 = make_arrays(seed=1), make_arrays(seed=2)
    results = {}

    def run(name, g, seed):
        with engine.client() as c:
            job = c.submit(g, STYLE, settings={"steps": 8, "seed": seed})
            results[name] = (job.id, [e for e in job.progress(timeout=30)], job.result(timeout=30))

    threads = [threading.Thread(target=run, args=a) for a in (("a", g1, 1), ("b", g2, 2))]
    for t in threads:
        t.start()
    # a third client attaches to whatever job exists and watches it too
    with engine.client() as c3:
        deadline = time.monotonic() + 10
        while not c3.list_jobs() and time.monotonic() < deadline:
            time.sleep(0.01)
        other = c3.attach(c3.list_jobs()[0]["id"])
        assert other.wait(timeout=30)["state"] == "done"
    for t in threads:
        t.join(30)
    assert results["a"][0] != results["b"][0]
    for name, g, seed in (("a", g1, 1), ("b", g2, 2)):
        job_id, events, out = results[name]
        assert all(e.job_id == job_id for e in events), "a client got another job's events"
        assert np.array_equal(out.sh, expected_result(g, 8, seed).sh)


def test_limits_and_errors(tmp_path):
    e = ThreadedEngine(tmp_path / "s", max_gaussians=30, max_steps=50, max_resolution=64)
    try:
        with e.client() as c:
            with pytest.raises(RemoteError, match="40 Gaussians, over .*checked before sending") as ei:
                c.submit(make_arrays(40), STYLE)
            assert ei.value.code == "limit"
            c.welcome = dataclasses.replace(c.welcome, limits={})  # skip the client's own check
            with pytest.raises(RemoteError, match="40 Gaussians exceed") as ei:
                c.submit(make_arrays(40), STYLE)
            assert ei.value.code == "limit"
            with pytest.raises(RemoteError, match="steps=51"):
                c.submit(make_arrays(10), STYLE, settings={"steps": 51})
            with pytest.raises(RemoteError, match="max resolution"):
                c.submit(make_arrays(10), np.zeros((65, 8, 3), np.uint8))
            with pytest.raises(RemoteError, match="no job") as ei:
                c.attach("0123456789ab")
            assert ei.value.code == "not_found"
            with pytest.raises(ValueError, match="not a job id"):
                c.attach("../../etc/passwd")
            assert c.list_jobs() == []  # nothing was stored
            c.ping()
    finally:
        e.stop()


def test_clean_removes_only_finished_jobs(engine, tmp_path):
    with engine.client() as c:
        done = c.submit(make_arrays(), STYLE, settings={"steps": 3})
        done.wait(timeout=10)
        assert c.clean() == [done.id]
        assert not (engine.server.store.jobs_dir / done.id).exists()
        assert c.list_jobs() == []


def test_engine_unavailable_is_clear():
    with EngineClient("tcp://127.0.0.1:1", timeout=0.3) as c:
        with pytest.raises(EngineUnavailable, match="no Splatbrush engine answered"):
            c.ping()


def test_non_loopback_bind_without_keys_is_refused(tmp_path):
    for address in ("tcp://0.0.0.0:5557", "tcp://*:5557", "tcp://192.168.1.5:5557"):
        with pytest.raises(SecurityError, match="CURVE"):
            EngineServer(ServerConfig(address=address, state_dir=str(tmp_path)), SyntheticRunner())


def test_curve_admits_only_authorized_clients(tmp_path):
    keys = tmp_path / "keys"
    server_pub, server_sec = generate_keys(keys / "server", "server")
    good_pub, good_sec = generate_keys(keys / "good", "good")
    _, bad_sec = generate_keys(keys / "bad", "bad")
    allowed = keys / "allowed"
    allowed.mkdir()
    (allowed / "good.key").write_bytes(good_pub.read_bytes())
    e = ThreadedEngine(tmp_path / "s", curve_secret_key=str(server_sec), authorized_keys=str(allowed))
    try:
        with e.client(server_public_key=server_pub, client_keys=good_sec) as c:
            assert c.ping()["version"] == 2
        with e.client(server_public_key=server_pub, client_keys=bad_sec, timeout=1.0) as c:
            with pytest.raises(EngineUnavailable):
                c.ping()
        with e.client(timeout=1.0) as c:  # plain-text client
            with pytest.raises(EngineUnavailable):
                c.ping()
    finally:
        e.stop()
    # and with keys, a non-loopback bind is allowed
    s = EngineServer(
        ServerConfig(
            address="tcp://0.0.0.0:0",
            state_dir=str(tmp_path / "t"),
            curve_secret_key=str(server_sec),
            authorized_keys=str(allowed),
        ),
        SyntheticRunner(),
    )
    assert s.config.address.startswith("tcp://0.0.0.0")


def test_watchers_get_heartbeats(engine):
    with engine.client() as c:
        job = c.submit(make_arrays(), STYLE, settings={"steps": 2})
        job.wait(timeout=10)
        job.poll()
        t_end = time.monotonic() + 1.6  # the test engine beats every 0.5 s
        worst = 0.0
        while time.monotonic() < t_end:
            job.poll()
            worst = max(worst, c.seconds_since_heard())
            time.sleep(0.05)
        assert worst < 1.2, f"{worst:.2f} s without a heartbeat"


def test_stylize_runner_refuses_unknown_presets_and_missing_devices(tmp_path):
    import torch

    from engine.server import StylizeRunner

    e = ThreadedEngine(tmp_path / "s", StylizeRunner("cpu"))
    try:
        with e.client() as c:
            with pytest.raises(RemoteError, match="unknown preset 'nope'") as ei:
                c.submit(make_arrays(), STYLE, settings={"preset": "nope"})
            assert ei.value.code == "invalid"
            if not torch.cuda.is_available():
                with pytest.raises(RemoteError, match="no CUDA"):
                    c.submit(make_arrays(), STYLE, settings={"device": "cuda"})
            assert c.list_jobs() == []
    finally:
        e.stop()
