"""shared_protocol.atomic (the one atomic-write helper) and shared_protocol.events (the progress event)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from shared_protocol.atomic import atomic_open, atomic_write_bytes, atomic_write_json, remove_partials
from shared_protocol.events import ProgressEvent


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_atomic_write_creates_with_requested_mode_and_leaves_no_temp(tmp_path):
    p = tmp_path / "secret.key"
    atomic_write_bytes(p, b"abc", mode=0o600)
    assert p.read_bytes() == b"abc"
    assert _mode(p) == 0o600
    assert sorted(x.name for x in tmp_path.iterdir()) == ["secret.key"]


def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes(b"old")
    os.chmod(p, 0o644)
    atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"new" and _mode(p) == 0o644


def test_atomic_write_new_file_follows_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "b", b"x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "b") == 0o640


def test_atomic_open_error_keeps_the_old_file_and_removes_the_temp(tmp_path):
    p = tmp_path / "c.json"
    atomic_write_json(p, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(p) as f:
            f.write(b"partial")
            raise RuntimeError("writer died")
    assert p.read_text().replace(" ", "").replace("\n", "") == '{"v":1}'
    assert [x.name for x in tmp_path.iterdir()] == ["c.json"]
    with pytest.raises(ValueError):
        atomic_write_json(p, {"v": float("nan")})


def test_remove_partials_only_removes_old_part_files(tmp_path):
    old = tmp_path / ".out.ply.abc123.part"
    young = tmp_path / ".out.ply.def456.part"
    keep = tmp_path / "keep.part"  # not a hidden temp of ours
    for f in (old, young, keep):
        f.write_bytes(b"x")
    os.utime(old, (1, 1))
    removed = remove_partials(tmp_path, older_than_s=3600)
    assert removed == [old]
    assert young.exists() and keep.exists()


def test_progress_event_positional_order_matches_the_loop_and_wire_safe_clips():
    ev = ProgressEvent(3, 10, "optimize", {"style": 1.5, "bad": float("nan")}, None, 2.0)
    assert (ev.step, ev.total_steps, ev.phase, ev.elapsed_s) == (3, 10, "optimize", 2.0)
    assert ev.kind == "progress" and not ev.finished and ev.fraction == pytest.approx(0.3)
    w = ev.wire_safe(job_id="0123456789ab", phase="p" * 100)
    assert w.losses == {"style": 1.5} and len(w.phase) == 64 and w.job_id == "0123456789ab"
    assert ev.phase == "optimize"  # the original is untouched
    img = ProgressEvent(1, 2, preview=np.zeros((4, 4, 3), np.uint8), state="done")
    assert img.kind == "preview" and img.finished
    assert ProgressEvent(1, 2, preview=np.zeros((4, 4), np.float32)).wire_safe().preview is None
