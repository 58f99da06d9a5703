"""Several workers in one engine (`serve --workers N` / `--devices`): two CPU workers run two jobs at once
(their running intervals overlap; with one worker they do not), cancel reaches the worker running the job,
and a kill -9 of a 2-worker engine mid-run resumes both jobs on restart to the uninterrupted results."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest
from server_helpers import STYLE, ThreadedEngine, free_port, make_arrays, start_engine_process
from test_server_restart import uninterrupted, wait_step

from engine.cli import main
from engine.server import ServerConfig, SyntheticRunner
from engine.server.pool import worker_devices
from engine.server.server import EngineServer
from shared_protocol.client import EngineClient

SYNTH = ("--runner", "synthetic", "--synthetic-step-s", "0.05", "--checkpoint-every", "3")


def run_two(tmp_path, workers: int, steps: int = 40):
    """Submit two jobs to an engine of `workers` workers; returns their final statuses and the wall time."""
    e = ThreadedEngine(tmp_path / f"state{workers}", SyntheticRunner(step_s=0.02), workers=workers)
    try:
        assert len(e.server.pool) == workers
        with e.client() as c:
            t0 = time.perf_counter()
            settings = [{"steps": steps, "seed": i} for i in (1, 2)]
            jobs = [c.submit(make_arrays(seed=i + 1), STYLE, settings=s) for i, s in enumerate(settings)]
            outs = [j.result(timeout=30) for j in jobs]
            wall = time.perf_counter() - t0
            for i, out in zip((1, 2), outs, strict=True):
                assert np.array_equal(out.sh, uninterrupted(make_arrays(seed=i), steps, i).sh)
            return [j.status() for j in jobs], wall
    finally:
        e.stop()


def overlap(a: dict, b: dict) -> bool:
    return a["started"] < b["finished"] and b["started"] < a["finished"]


def test_two_workers_run_two_jobs_at_once(tmp_path):
    (a, b), wall2 = run_two(tmp_path, workers=2)
    assert a["state"] == b["state"] == "done"
    assert overlap(a, b), f"2 workers: running intervals do not overlap: {a} {b}"
    (a1, b1), wall1 = run_two(tmp_path, workers=1)
    assert not overlap(a1, b1), "1 worker ran two jobs at once"
    print(f"two 40-step jobs (0.02 s/step): 1 worker {wall1:.2f} s, 2 workers {wall2:.2f} s")


def test_cancel_reaches_the_worker_running_the_job(tmp_path):
    e = ThreadedEngine(tmp_path / "s", SyntheticRunner(step_s=0.05), workers=2)
    try:
        with e.client() as c:
            long = [c.submit(make_arrays(seed=i), STYLE, settings={"steps": 400, "seed": i}) for i in (1, 2)]
            short = c.submit(make_arrays(seed=3), STYLE, settings={"steps": 3, "seed": 3})
            for j in long:
                wait_step(c, j.id, 1)
            assert short.status()["state"] == "queued"  # both workers busy
            short.cancel()
            assert short.wait(timeout=10)["state"] == "cancelled"
            long[1].cancel()
            assert long[1].wait(timeout=10)["state"] == "cancelled"
            assert long[0].status()["state"] == "running"  # the other worker's job is untouched
            long[0].cancel()
            assert long[0].wait(timeout=10)["state"] == "cancelled"
    finally:
        e.stop()


def test_worker_devices_and_config(tmp_path):
    assert worker_devices() == ["auto"]
    assert worker_devices("cpu", 3) == ["cpu"] * 3
    assert worker_devices(devices=["cpu", "cpu"]) == ["cpu", "cpu"]
    auto = worker_devices(devices=["auto"])
    assert auto == ["cpu"] or all(d.startswith("cuda:") for d in auto)
    with pytest.raises(ValueError, match="not both"):
        worker_devices("cpu", 2, ["cpu"])
    with pytest.raises(ValueError, match="at least 1"):
        worker_devices("cpu", 0)
    with pytest.raises(ValueError, match="cuda:99"):
        worker_devices(devices=["cuda:99"])
    server = EngineServer(ServerConfig(state_dir=str(tmp_path / "s"), devices=["cpu", "cpu"]))
    assert [w.device for w in server.pool.workers] == ["cpu", "cpu"]
    runners = [w.runner for w in server.pool.workers]
    assert runners[0] is not runners[1] and all(r.device == "cpu" for r in runners)
    assert server.pool.threads is not None and server.pool.threads >= 1


def test_serve_cli_refuses_a_bad_device(tmp_path, capsys):
    args = ["serve", "--state-dir", str(tmp_path / "s"), "--address", f"tcp://127.0.0.1:{free_port()}"]
    assert main([*args, "--devices", "cuda:99", "--runner", "synthetic"]) == 2
    assert "cuda:99" in capsys.readouterr().err


def test_kill_9_of_a_two_worker_engine_resumes_both_jobs(tmp_path):
    port, state = free_port(), tmp_path / "state"
    addr = f"tcp://127.0.0.1:{port}"
    gs = [make_arrays(seed=21), make_arrays(seed=22)]
    proc = start_engine_process(state, port, *SYNTH, "--workers", "2")
    old = EngineClient(addr, timeout=10)
    try:
        jobs = [old.submit(g, STYLE, settings={"steps": 30, "seed": i}) for i, g in enumerate(gs)]
        for j in jobs:
            wait_step(old, j.id, 7)  # both running at once, each past a checkpoint
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        for j in jobs:
            status = json.loads((state / "jobs" / j.id / "status.json").read_text())
            assert status["state"] == "running", status  # both died running (status.json steps lag 0.5 s)
            with np.load(state / "jobs" / j.id / "checkpoints" / "synthetic.npz") as z:
                assert 0 < int(z["step"]) < 30

        proc = start_engine_process(state, port, *SYNTH, "--workers", "2")
        outs = [j.result(timeout=30) for j in jobs]
        for i, (j, out) in enumerate(zip(jobs, outs, strict=True)):
            st = j.status()
            assert st["state"] == "done" and st["resumes"] == 1
            assert j.report["resumed_from"] and j.report["resumed_from"] % 3 == 0
            assert np.array_equal(out.sh, uninterrupted(gs[i], 30, i).sh), "resumed run differs"
        a, b = (j.status() for j in jobs)
        assert overlap(a, b), "the two resumed jobs did not run at once"
    finally:
        old.close()
        proc.kill()
        proc.wait(10)


def test_a_job_naming_one_of_the_pools_devices_waits_for_its_worker(tmp_path):
    """Dispatch order without running anything: a job pinned to cuda:0 is skipped by the cpu worker."""
    from engine.server.pool import WorkerPool
    from engine.server.store import JobStore
    from shared_protocol.messages import JobSettings

    store = JobStore(tmp_path / "s")
    pool = WorkerPool(store, SyntheticRunner(), lambda msg: None, ["cpu", "cuda:0"])
    ids = []
    for device in ("cuda:0", "auto", "cpu"):
        info, _ = store.create(make_arrays(), STYLE, None, JobSettings(device=device), {})
        pool.enqueue(info.id)
        ids.append(info.id)
    cpu, gpu = pool.workers
    assert pool._take(cpu) == ids[1] and cpu.current == ids[1]  # the oldest job it may run
    assert pool.running(ids[1]) and not pool.running(ids[0])
    assert pool._take(cpu) == ids[2]
    assert pool._take(gpu) == ids[0]
    pool.stop()
    assert pool._take(cpu) is None
