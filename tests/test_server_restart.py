"""Crash and restart: kill -9 mid-job, restart, the job finishes with the same result as an uninterrupted run
(same seed); SIGTERM checkpoints and exits cleanly; results can be fetched after reconnecting."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from server_helpers import REPO, STYLE, free_port, make_arrays, start_engine_process

from engine.server import SyntheticRunner
from engine.server.runners import JobInputs
from shared_protocol.client import EngineClient
from shared_protocol.messages import JobSettings

SYNTH = ("--runner", "synthetic", "--synthetic-step-s", "0.05", "--checkpoint-every", "3")


def uninterrupted(g, steps, seed):
    out = SyntheticRunner(step_s=0, checkpoint_every=0).run(
        JobInputs(g, STYLE, None, JobSettings(steps=steps, seed=seed), {}),
        lambda ev: None,
        lambda: False,
        Path("/x"),
    )
    return out.gaussians


def wait_step(client, job_id, step, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = client.attach(job_id, watch=False).status()
        if st["step"] >= step:
            return st
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach step {step}")


def test_kill_9_mid_job_then_restart_resumes_to_the_same_result(tmp_path):
    port, state = free_port(), tmp_path / "state"
    addr = f"tcp://127.0.0.1:{port}"
    g, g2 = make_arrays(seed=11), make_arrays(seed=12)
    proc = start_engine_process(state, port, *SYNTH)
    old = EngineClient(addr, timeout=10)
    try:
        job = old.submit(g, STYLE, settings={"steps": 40, "seed": 7})
        queued = old.submit(g2, STYLE, settings={"steps": 5, "seed": 1})
        wait_step(old, job.id, 10)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        status = json.loads((state / "jobs" / job.id / "status.json").read_text())
        assert status["state"] == "running" and 0 < status["step"] < 40
        assert (state / "jobs" / job.id / "checkpoints" / "synthetic.npz").is_file()

        proc = start_engine_process(state, port, *SYNTH)
        # the client that was connected before the crash carries on (its socket reconnects; it re-watches)
        out = job.result(timeout=30)
        assert job.status()["state"] == "done" and job.status()["resumes"] == 1
        assert job.report["resumed_from"] and job.report["resumed_from"] % 3 == 0
        assert np.array_equal(out.sh, uninterrupted(g, 40, 7).sh), (
            "resumed run differs from an uninterrupted one"
        )
        with EngineClient(addr, timeout=5) as c:  # and a new client fetches the other job
            assert np.array_equal(c.attach(queued.id).result(timeout=30).sh, uninterrupted(g2, 5, 1).sh)
    finally:
        old.close()
        proc.kill()
        proc.wait(10)


def test_sigterm_checkpoints_and_exits_cleanly(tmp_path):
    port, state = free_port(), tmp_path / "state"
    addr = f"tcp://127.0.0.1:{port}"
    g = make_arrays(seed=3)
    proc = start_engine_process(state, port, *SYNTH)
    try:
        with EngineClient(addr, timeout=5) as c:
            job = c.submit(g, STYLE, settings={"steps": 200, "seed": 2})
            wait_step(c, job.id, 4)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert time.monotonic() - t0 < 5
        status = json.loads((state / "jobs" / job.id / "status.json").read_text())
        assert status["state"] == "queued" and status["phase"] == "paused"
        with np.load(state / "jobs" / job.id / "checkpoints" / "synthetic.npz") as z:
            assert int(z["step"]) == status["step"] > 0  # checkpointed exactly where it stopped

        proc = start_engine_process(state, port, *SYNTH)
        with EngineClient(addr, timeout=5) as c:
            h = c.attach(job.id)
            assert h.status()["state"] in ("queued", "running")
            h.cancel()  # no need to run 200 steps: the resumed job is live and cancellable
            assert h.wait(timeout=10)["state"] == "cancelled"
    finally:
        proc.kill()
        proc.wait(10)


REAL_ENGINE = """
import sys
from engine.server import EngineServer, ServerConfig, StylizeRunner
runner = StylizeRunner("cpu", checkpoint_every=2, final_metrics=False)
EngineServer(ServerConfig(address=sys.argv[1], state_dir=sys.argv[2]), runner).serve_forever()
"""


@pytest.mark.slow
def test_kill_9_with_the_real_stylizer(tmp_path):
    """The same crash test through engine.stylize: tiny scene, few steps; resumed == uninterrupted."""
    import torch
    from conftest import make_random_scene

    from engine.scene.io import scene_to_arrays

    g = scene_to_arrays(make_random_scene(150, sh_degree=1, dtype=torch.float32))
    # enough steps that the job is still running when the kill comes (8 finished first on a loaded machine)
    settings = {"preset": "preview", "steps": 60, "size": 24, "views": 2, "seed": 5, "device": "cpu"}
    outs = []
    for kill in (False, True):
        port, state = free_port(), tmp_path / f"state{int(kill)}"
        addr = f"tcp://127.0.0.1:{port}"
        cmd = [sys.executable, "-c", REAL_ENGINE, addr, str(state)]

        def start(cmd=cmd, addr=addr):
            p = subprocess.Popen(cmd, cwd=REPO)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    with EngineClient(addr, timeout=0.5) as c:
                        c.ping()
                    return p
                except Exception:
                    time.sleep(0.3)
            raise AssertionError("engine did not start")

        proc = start()
        try:
            with EngineClient(addr, timeout=10) as c:
                job = c.submit(g, STYLE, settings=settings)
                if kill:
                    wait_step(c, job.id, 4, timeout=300)
                    proc.kill()
                    proc.wait(10)
                    proc = start()
                outs.append(c.attach(job.id).result(timeout=600))
                if kill:
                    assert c.attach(job.id).status()["resumes"] == 1
        finally:
            proc.kill()
            proc.wait(10)
    assert np.array_equal(outs[0].sh, outs[1].sh)
    assert not np.array_equal(outs[0].sh, g.sh)
