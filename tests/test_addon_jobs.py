"""Blender add-on, bpy-free: the Stylize job state machine, against a scripted fake engine client."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blender_addon.jobs import EngineOptions, StylizeTask, engine_command  # noqa: E402


@dataclass
class Event:  # the shape of shared_protocol.client.JobEvent
    job_id: str
    kind: str
    state: str
    step: int = 0
    total_steps: int = 0
    preview: np.ndarray | None = None


class FakeJob:
    def __init__(self, script):
        self.script = list(script)
        self.cancelled = False
        self.report = {"steps": 3}
        self.state = "queued"

    def poll(self):
        if not self.script:
            return []
        ev = self.script.pop(0)
        self.state = ev.state
        return [ev]

    def status(self):
        return {"id": "j1", "state": self.state}

    def cancel(self):
        self.cancelled = True
        self.script = [Event("j1", "progress", "cancelled")]

    def result(self):
        return "RESULT"


class FakeClient:
    def __init__(self, alive_after=0, script=()):
        self.pings = 0
        self.alive_after = alive_after
        self.job = FakeJob(script)
        self.submitted = None
        self.closed = False
        self.timeout = 1.0

    def ping(self, timeout=None):
        self.pings += 1
        if self.pings <= self.alive_after:
            raise ConnectionError("nothing answers")
        return {"server": "fake"}

    def submit(self, **kwargs):
        self.submitted = kwargs
        return self.job

    def close(self):
        self.closed = True


SCRIPT = [
    Event("j1", "progress", "running", 1, 3),
    Event("j1", "preview", "running", 2, 3, np.full((4, 5, 3), 7, np.uint8)),
    Event("j1", "progress", "running", 3, 3),
    Event("j1", "progress", "done", 3, 3),
]


def make_task(client, launcher=None, **options):
    return StylizeTask(
        EngineOptions(**options),
        gaussians="G",
        style_image=np.zeros((2, 2, 3), np.uint8),
        cameras=None,
        settings={"preset": "preview", "steps": 3},
        client_factory=lambda opts, timeout: client,
        launcher=launcher or (lambda opts, log: pytest.fail("must not start an engine")),
    )


def test_job_runs_through_every_state_and_keeps_progress_and_preview():
    client = FakeClient(script=SCRIPT)
    task = make_task(client)
    seen = []
    for _ in range(20):
        seen.append((task.tick().state, task.status.step))
        if task.finished:
            break
    states = [s for s, _ in seen]
    assert states[0] == "submitting" and states[1] == "running" and states[-1] == "done"
    assert "fetching" in states
    assert task.result == "RESULT" and task.report == {"steps": 3}
    assert task.status.fraction == 1.0 and task.status.preview.shape == (4, 5, 3)
    assert client.submitted["settings"] == {"preset": "preview", "steps": 3} and client.closed
    assert {"connect", "submit", "optimize", "fetch", "total"} <= set(task.status.timings)


def test_local_engine_started_when_nothing_answers():
    client = FakeClient(alive_after=3, script=SCRIPT)
    started = []

    class Proc:
        returncode = None

        def poll(self):
            return None

    task = make_task(client, launcher=lambda opts, log: started.append(opts) or Proc())
    status = task.run_to_end(poll_interval=0.0, timeout=5)
    assert status.state == "done" and len(started) == 1


def test_no_engine_and_no_auto_start_fails_with_a_hint():
    task = make_task(FakeClient(alive_after=10**6), auto_start=False)
    assert task.tick().state == "failed"
    assert "no engine answers at tcp://127.0.0.1:5557" in task.status.message
    assert "splatbrush serve" in task.status.message


def test_remote_addresses_are_never_auto_started():
    task = make_task(FakeClient(alive_after=10**6), address="tcp://10.1.2.3:5557")
    assert task.tick().state == "failed" and "preferences" in task.status.message
    assert not EngineOptions(address="tcp://10.1.2.3:5557").is_loopback()
    assert EngineOptions(address="tcp://localhost:1").is_loopback()


def test_engine_that_dies_on_start_is_reported():
    class Dead:
        returncode = 3

        def poll(self):
            return 3

    task = make_task(FakeClient(alive_after=10**6), launcher=lambda opts, log: Dead())
    assert task.run_to_end(poll_interval=0.0, timeout=5).state == "failed"
    assert "exited with code 3" in task.status.message


def test_cancel_while_running_ends_cancelled():
    client = FakeClient(script=SCRIPT[:1] + [Event("j1", "progress", "running", 2, 3)] * 50)
    task = make_task(client)
    for _ in range(3):
        task.tick()
    assert task.status.state == "running"
    task.cancel()
    assert client.job.cancelled
    assert task.run_to_end(poll_interval=0.0, timeout=5).state == "cancelled"
    assert task.result is None


def test_failed_job_message_comes_through():
    client = FakeClient(script=[Event("j1", "progress", "failed")])
    task = make_task(client)
    assert task.run_to_end(poll_interval=0.0, timeout=5).state == "failed"
    assert "failed" in task.status.message


def test_engine_command():
    cmd = engine_command(EngineOptions(python="/opt/py/bin/python3 -X utf8", state_dir="/tmp/s"))
    assert cmd == ["/opt/py/bin/python3", "-X", "utf8", "-m", "engine", "serve", "--address",
                   "tcp://127.0.0.1:5557", "--state-dir", "/tmp/s"]  # fmt: skip
