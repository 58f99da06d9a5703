"""Job store hardening: private files, orphans and partial writes cleaned at start, in-memory state changed
only after its write succeeded, disk full reported as such, crash-resume cap, idempotency keys kept across
restarts."""

from __future__ import annotations

import errno
import json
import os
import stat

import numpy as np
import pytest
from server_helpers import STYLE, make_arrays

import engine.server.store as store_mod
from engine.server.store import DiskFullError, JobStore
from shared_protocol.messages import JobSettings


def _create(store: JobStore, owner: str = "user:a", key: str | None = None):
    return store.create(
        make_arrays(), STYLE, None, JobSettings(steps=3), {}, "j", owner=owner, idempotency_key=key
    )


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_state_dir_is_private_even_when_it_existed_open(tmp_path):
    root = tmp_path / "state"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    old = os.umask(0)  # the most permissive umask a user could have
    try:
        s = JobStore(root)
        info, created = _create(s)
    finally:
        os.umask(old)
    assert created
    assert _mode(root) == 0o700 and _mode(s.jobs_dir) == 0o700
    d = s.job_dir(info.id)
    for p in [d, d / "inputs", *d.rglob("*")]:
        want = 0o700 if p.is_dir() else 0o600
        assert _mode(p) == want, f"{p} is {oct(_mode(p))}"


def test_orphans_partials_and_trash_are_removed_at_start(tmp_path):
    s = JobStore(tmp_path)
    info, _ = _create(s)
    orphan = s.jobs_dir / "0123456789ab"
    (orphan / "inputs").mkdir(parents=True)  # a submit that died before its status.json
    part = s.job_dir(info.id) / "output" / ".gaussians.npz.1234.part"
    part.parent.mkdir()
    part.write_bytes(b"x" * 100)
    trash = s.jobs_dir / ".trash-aaaaaaaaaaaa-123456"
    trash.mkdir()
    s2 = JobStore(tmp_path)
    assert not orphan.exists() and not part.exists() and not trash.exists()
    assert s2.get(info.id) is not None


def test_a_failed_input_write_leaves_no_folder(tmp_path, monkeypatch):
    s = JobStore(tmp_path)

    def boom(*a, **k):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(store_mod, "write_json", boom)
    with pytest.raises(OSError):
        _create(s)
    assert list(s.jobs_dir.iterdir()) == []
    assert s.all() == []


def test_disk_full_is_reported_as_disk_full(tmp_path, monkeypatch):
    s = JobStore(tmp_path)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_mod, "save_arrays", full)
    with pytest.raises(DiskFullError, match="state dir .* is full .*No space left") as ei:
        _create(s)
    assert ei.value.code == "disk_full"
    assert list(s.jobs_dir.iterdir()) == []


def test_memory_changes_only_after_the_status_write(tmp_path, monkeypatch):
    s = JobStore(tmp_path)
    info, _ = _create(s)

    def boom(*a, **k):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(store_mod, "write_json", boom)
    with pytest.raises(OSError):
        s.update(info.id, state="failed", error="x")
    assert s.get(info.id).state == "queued"  # not reported failed while the disk still says queued
    monkeypatch.undo()
    assert json.loads((s.job_dir(info.id) / "status.json").read_text())["state"] == "queued"


def test_a_job_that_took_the_engine_down_twice_fails_with_that_reason(tmp_path):
    s = JobStore(tmp_path)
    info, _ = _create(s)
    s.update(info.id, state="running")
    assert JobStore(tmp_path).recover() == [info.id]  # first crash: resumed
    s = JobStore(tmp_path)
    assert s.get(info.id).resumes == 1
    s.update(info.id, state="running")
    s = JobStore(tmp_path)
    assert s.recover() == []  # second crash: not again
    j = s.get(info.id)
    assert j.state == "failed" and "stopped 2 times" in j.error and j.finished
    assert JobStore(tmp_path).get(info.id).state == "failed"  # and that is on disk


def test_idempotency_key_returns_the_same_job_across_restarts_per_owner(tmp_path):
    s = JobStore(tmp_path)
    a, created = _create(s, "user:a", "key-00000001")
    assert created
    again, created = _create(s, "user:a", "key-00000001")
    assert (again.id, created) == (a.id, False)
    other, created = _create(s, "user:b", "key-00000001")  # another owner's key is another job
    assert created and other.id != a.id
    s2 = JobStore(tmp_path)
    assert s2.find("user:a", "key-00000001").id == a.id
    assert len(s2.all()) == 2 and len(s2.all("user:a")) == 1
    s2.update(a.id, state="done")
    assert s2.remove(a.id)
    assert s2.find("user:a", "key-00000001") is None
    assert np.array_equal(s2.inputs(other.id)[1], STYLE)
