"""Submit hardening: a retried submit (same idempotency key) returns the same job; a job that cannot fit the
machine (memory or time, estimated from its settings) is refused at submit with the numbers."""

from __future__ import annotations

import time

import numpy as np
import pytest
from server_helpers import STYLE, ThreadedEngine, make_arrays

from engine.server import StylizeRunner, SyntheticRunner
from engine.server.estimate import estimate_job
from shared_protocol.errors import RemoteError
from shared_protocol.messages import JobReply, JobSettings, Submit


def test_a_submit_retried_after_a_lost_reply_makes_one_job(tmp_path):
    e = ThreadedEngine(tmp_path / "s", SyntheticRunner(step_s=0.01))
    real_send, dropped = e.server._send, []

    def lossy(identity, msg, rid, event=False):
        if isinstance(msg, JobReply) and not dropped:
            dropped.append(msg.job.id)  # the job exists, but its reply never reaches the client
            return True
        return real_send(identity, msg, rid, event)

    e.server._send = lossy
    try:
        with e.client(timeout=1.0) as c:
            job = c.submit(make_arrays(), STYLE, settings={"steps": 2}, retries=1)
            assert dropped == [job.id]
            assert [j["id"] for j in c.list_jobs()] == [job.id]
            assert job.wait(timeout=10)["state"] == "done"
            # the same key, sent on purpose again later, still returns that job (not a second run)
            again = c.submit(make_arrays(), STYLE, idempotency_key="batch-row-0001")
            assert c.submit(make_arrays(), STYLE, idempotency_key="batch-row-0001").id == again.id
            assert len(c.list_jobs()) == 2
            with pytest.raises(ValueError, match="idempotency_key"):
                c.submit(make_arrays(), STYLE, idempotency_key="bad key!")
    finally:
        e.stop()


def test_estimate_grows_with_views_and_size():
    small = estimate_job(200, 160, 12, 1, 10_000, 16, None, "cpu")
    huge = estimate_job(200, 4096, 1024, 1, 10_000, 16, None, "cpu")
    assert small.memory_bytes < 2 * 2**30
    assert huge.memory_bytes > 1e12  # ~4.5 TB of prepared views: what took the engine down
    assert "1024 views" in huge.detail and huge.device == "cpu"
    cams = [{"width": 1920, "height": 1080}] * 4
    est = estimate_job(10, 960, 0, 1, 1000, 1, cams, "cuda:0")
    assert "4 views of up to 518400 px" in est.detail  # fitted to size on the longer side


def test_jobs_that_cannot_fit_are_refused_at_submit_with_numbers(tmp_path):
    e = ThreadedEngine(tmp_path / "s", StylizeRunner("cpu"))
    try:
        with e.client() as c:
            with pytest.raises(
                RemoteError, match=r"needs about [\d.]+ TiB \(1024 views .*more than the"
            ) as ei:
                c.submit(make_arrays(), STYLE, settings={"views": 1024, "size": 4096, "preset": "fast"})
            assert ei.value.code == "limit"
            assert c.list_jobs() == []
        # the presets at their defaults fit (checked without running them)
        for preset in ("fast", "painterly", "preview", "paper"):
            msg = Submit(make_arrays(1000), STYLE, None, JobSettings(preset=preset))
            assert e.server._check_submit(msg) > 0
    finally:
        e.stop()


def test_engine_memory_and_time_limits(tmp_path):
    e = ThreadedEngine(
        tmp_path / "s", SyntheticRunner(step_s=0.01), max_job_memory_bytes=100_000, max_job_seconds=0.5
    )
    try:
        with e.client() as c:
            with pytest.raises(RemoteError, match=r"needs about [\d.]+ KiB .* more than the 97.7 KiB"):
                c.submit(make_arrays(1000), STYLE, settings={"steps": 2})
            with pytest.raises(RemoteError, match=r"run about 1 s .*over this engine's limit of 0 s"):
                c.submit(make_arrays(40), STYLE, settings={"steps": 100})
            job = c.submit(make_arrays(40), STYLE, settings={"steps": 10})
            assert job.wait(timeout=10)["state"] == "done"
            assert np.isfinite(job.result().sh).all()
    finally:
        e.stop()


def test_a_retry_while_the_first_submit_is_still_stored_waits_for_it(tmp_path):
    e = ThreadedEngine(tmp_path / "s", SyntheticRunner(step_s=0.01))
    real_create, calls = e.server.store.create, []

    def slow_create(*a, **k):  # the first store takes longer than the client waits for its reply
        calls.append(k.get("idempotency_key"))
        if len(calls) == 1:
            time.sleep(1.5)
        return real_create(*a, **k)

    e.server.store.create = slow_create
    try:
        with e.client(timeout=1.0) as c:
            job = c.submit(make_arrays(), STYLE, settings={"steps": 2}, retries=1)
            assert len(calls) >= 2 and len(set(calls)) == 1  # the retry came with the same key...
            assert [j["id"] for j in c.list_jobs()] == [job.id]  # ...and made no second job
            assert job.wait(timeout=10)["state"] == "done"
    finally:
        e.stop()
