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
    assert not client.job.cancelled  # cancel() never talks to the engine itself (it may block)...
    task.tick()
    assert client.job.cancelled  # ...the next tick (the worker thread's) does
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


# ------------------------------------------------------------------------------------- lifecycle
class Alive:
    returncode = None

    def poll(self):
        return self.returncode


def test_engine_killed_mid_job_is_reported_at_once_with_its_log(tmp_path):
    log = tmp_path / "engine.log"
    log.write_text("old run\n")
    proc = Alive()
    client = FakeClient(alive_after=1, script=[Event("j1", "progress", "running", 1, 9)] + [] * 0)

    def launch(opts, log_path):
        log_path.open("a").write("loading models\nKilled\n")
        return proc

    task = make_task(client, launcher=launch)
    task._log_path = log
    for _ in range(4):
        task.tick()
    assert task.status.state == "running"
    proc.returncode = -9
    assert task.tick().state == "failed"
    msg = task.status.message
    assert "the engine died (exit code -9)" in msg and str(log) in msg
    assert "Killed" in msg and "old run" not in msg  # only what this engine wrote


def test_silent_engine_is_declared_gone_after_the_heartbeat_timeout(monkeypatch):
    import blender_addon.jobs as jobs

    client = FakeClient(script=[Event("j1", "progress", "running", 1, 9)])

    def dead_status():
        raise ConnectionError("no reply to status")

    client.job.status = dead_status
    task = make_task(client, heartbeat_timeout=3.0)
    clock = [1000.0]
    monkeypatch.setattr(jobs.time, "monotonic", lambda: clock[0])
    for _ in range(3):
        task.tick()
    assert task.status.state == "running"
    for _ in range(2):  # 2 s of silence: still running (a heartbeat may be late)
        clock[0] += 1.0
        assert task.tick().state == "running"
    clock[0] += 2.0  # 4 s > 3 s
    assert task.tick().state == "failed"
    assert "stopped answering 4 s ago" in task.status.message and "died" in task.status.message


def test_eta_from_the_step_rate(monkeypatch):
    import blender_addon.jobs as jobs

    script = [Event("j1", "progress", "running", s, 10) for s in (1, 2, 3, 5)]
    task = make_task(FakeClient(script=script))
    clock = [0.0]
    monkeypatch.setattr(jobs.time, "monotonic", lambda: clock[0])
    task.tick(), task.tick()  # connect, submit
    for _ in range(4):
        clock[0] += 2.0  # 2 s per event: steps 1, 2, 3 then 5
        task.tick()
    # from step 1 (t=2) to step 5 (t=8): 1.5 s per step, 5 steps left
    assert task.status.eta_s == pytest.approx(7.5)
    assert "0:08 left" in task.status.text() and task.status.text().startswith("running 5/10")


def test_worker_thread_keeps_snapshot_calls_instant():
    import threading
    import time

    gate = threading.Event()

    class SlowClient(FakeClient):
        def ping(self, timeout=None):
            gate.wait(5)  # a ping that hangs, as to an engine that is starting
            return super().ping(timeout)

    task = make_task(SlowClient(script=SCRIPT))
    task.start_thread(poll_interval=0.0)
    t0 = time.perf_counter()
    snap = task.snapshot()
    assert time.perf_counter() - t0 < 0.05 and snap.state == "starting"
    gate.set()
    task._thread.join(5)
    assert task.finished and task.status.state == "done"


@pytest.mark.parametrize(
    "address, error",
    [
        ("localhost:5557", "lacks the scheme: write tcp://localhost:5557"),
        ("tcp://127.0.0.1:99999", "port 99999 is outside 1-65535"),
        ("http://gpu-box:5557", "not of the form tcp://HOST:PORT"),
        ("tcp://gpu box:1", "not of the form"),
    ],
)
def test_bad_addresses_are_refused_with_the_form_to_use(address, error):
    from blender_addon.engine_setup import validate_address

    with pytest.raises(ValueError, match=error.replace(".", r"\.").replace("(", r"\(")):
        validate_address(address)
    task = make_task(FakeClient(), address=address)
    assert task.tick().state == "failed" and error in task.status.message


def test_good_addresses_pass():
    from blender_addon.engine_setup import validate_address

    for a in ("tcp://127.0.0.1:5557", " tcp://gpu-box.lan:1 ", "tcp://[::1]:65535"):
        assert validate_address(a) == a.strip()


class JobsClient(FakeClient):
    def __init__(self, jobs, **kw):
        super().__init__(**kw)
        self.jobs = jobs
        self.cancelled_ids = []

    def list_jobs(self):
        return self.jobs

    def attach(self, job_id, watch=True):
        outer = self

        class H:
            def cancel(self):
                outer.cancelled_ids.append(job_id)

        return H()


EARLIER = [
    {"id": "a" * 12, "state": "queued", "name": "old"},
    {"id": "b" * 12, "state": "done"},
    {"id": "c" * 12, "state": "running"},
]


def test_unfinished_jobs_of_an_earlier_session_are_listed_and_cancelled_on_an_engine_we_started():
    client = JobsClient(EARLIER, alive_after=1, script=SCRIPT)
    task = make_task(client, launcher=lambda o, log: Alive())
    task.tick(), task.tick()  # start the engine, connect
    assert client.cancelled_ids == ["a" * 12, "c" * 12]
    assert [j["id"] for j in task.status.earlier_jobs] == ["a" * 12, "c" * 12]
    assert "cancelled 2 unfinished job(s) of an earlier session" in task.status.notes[0]


def test_earlier_jobs_on_an_engine_someone_else_runs_are_only_listed():
    client = JobsClient(EARLIER, script=SCRIPT)
    task = make_task(client)
    task.tick()
    assert client.cancelled_ids == [] and len(task.status.earlier_jobs) == 2
    assert "2 earlier job(s) run before this one" in task.status.notes[0]
    assert task.run_to_end(poll_interval=0.0, timeout=5).state == "done"


def test_engine_python_detection_skips_pythons_without_the_engine(tmp_path, monkeypatch):
    from blender_addon import engine_setup

    without, with_engine = tmp_path / "without", tmp_path / "with"
    without.write_text("#!/bin/sh\nexit 1\n")
    with_engine.write_text("#!/bin/sh\nexit 0\n")
    for p in (without, with_engine):
        p.chmod(0o755)
    assert engine_setup.detect_engine_python([str(without), str(with_engine)]) == str(with_engine)
    assert engine_setup.detect_engine_python([str(without)]) is None
    monkeypatch.setattr(engine_setup, "python_candidates", lambda: [str(without)])
    with pytest.raises(RuntimeError, match="no Engine Python is set.*Edit > Preferences > Add-ons"):
        engine_setup.resolve_engine_python(EngineOptions(python=""))
    assert engine_setup.resolve_engine_python(EngineOptions(python=" /x/py ")) == "/x/py"
