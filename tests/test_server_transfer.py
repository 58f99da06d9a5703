"""Chunked transfers (protocol 2): no message an engine takes is bigger than one chunk plus its header; a 1M
Gaussian scene goes up and comes back bit-exact in chunks while other clients' pings are answered; uploads
are bounded (per client, per chunk, in flight, in time); what libzmq itself buffers is measured."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest
import zmq
from server_helpers import STYLE, ThreadedEngine, free_port, make_arrays, pinging, start_engine_process

from engine.server import SyntheticRunner
from shared_protocol import transfer as T
from shared_protocol.codec import encode
from shared_protocol.errors import RemoteError, VersionMismatch
from shared_protocol.messages import Error, Submit
from shared_protocol.splatfile import GAUSSIAN_FIELDS

MB = 1 << 20


def _same(a, b) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in GAUSSIAN_FIELDS)


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _zmtp_null(port: int) -> socket.socket:
    """A raw TCP peer speaking ZMTP 3.0 (NULL mechanism) as a DEALER: what a hostile client can send
    without libzmq (libzmq itself sends a multipart message only once it is complete)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\0") + b"\0" + b"\0" * 31)
    prop = b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    ready = b"\x05READY" + prop
    s.sendall(b"\x04" + bytes([len(ready)]) + ready)
    time.sleep(0.3)  # the peer's READY: a message before the handshake ends is a protocol error
    return s


def _zmtp_frame(data, more: bool) -> bytes:
    return bytes([0x02 | int(more)]) + struct.pack(">Q", len(data))


# a bare ROUTER in a child process: it reports whether any message arrived, and its RSS is read from /proc
ROUTER_CHILD = """
import sys, zmq
s = zmq.Context().socket(zmq.ROUTER)
s.setsockopt(zmq.MAXMSGSIZE, int(sys.argv[1]))
port = s.bind_to_random_port("tcp://127.0.0.1")
print(port, flush=True)
for line in sys.stdin:
    print(int(bool(s.poll(200))), flush=True)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_libzmq_holds_an_unfinished_multipart_message_whatever_its_size():
    """The residual risk docs/server.md states: ZMQ_MAXMSGSIZE bounds each frame, the receive HWM counts
    whole messages, and a message's frames wait in the pipe until its last one arrives, so the receiving
    application cannot see (nor refuse) a message that never ends. 40 frames of 4 MiB, none of them the
    last: the receiver's memory grows by about all of them while it has nothing to read."""
    child = subprocess.Popen(
        [sys.executable, "-c", ROUTER_CHILD, str(4 * MB + 1024)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    s = None
    try:
        s = _zmtp_null(int(child.stdout.readline()))
        time.sleep(0.3)
        before = _rss(child.pid)
        frame = memoryview(np.ones(4 * MB, np.uint8))
        for _ in range(40):
            s.sendall(_zmtp_frame(frame, more=True))
            s.sendall(frame)
        time.sleep(1.0)
        child.stdin.write("poll\n")
        child.stdin.flush()
        readable = child.stdout.readline().strip()
        grown = _rss(child.pid) - before
        print(f"bare ROUTER RSS grew by {grown / MB:.1f} MiB")
        assert readable == "0"  # nothing for the application to read (and so to refuse)...
        assert grown > 120 * MB, f"{grown / MB:.0f} MiB"  # ...while libzmq holds the 160 MiB sent
    finally:
        if s is not None:
            s.close()
        child.kill()
        child.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_engine_holds_at_most_one_message_of_a_client_that_never_finishes_it(tmp_path):
    """The bound that holds (the ZMTP guard in front of a plain tcp engine): the same unfinished 160 MiB
    message as above grows the engine by at most one message (16 MiB), a 64 MiB frame is never buffered,
    and the engine keeps answering everyone, that client included."""
    port = free_port()
    proc = start_engine_process(tmp_path / "s", port, "--runner", "synthetic")
    try:
        time.sleep(0.5)
        before = _rss(proc.pid)
        s = _zmtp_null(port)
        frame = memoryview(np.ones(4 * MB, np.uint8))
        for _ in range(40):  # 160 MiB, none of it the last frame
            s.sendall(_zmtp_frame(frame, more=True))
            s.sendall(frame)
        big = memoryview(np.ones(64 * MB, np.uint8))
        t = _zmtp_null(port)
        t.sendall(_zmtp_frame(big, more=False))  # one frame 8x the chunk limit
        t.sendall(big)
        time.sleep(1.0)
        grown = _rss(proc.pid) - before
        print(f"engine RSS grew by {grown / MB:.1f} MiB")
        assert grown < 40 * MB, f"the engine grew by {grown / MB:.0f} MiB"
        from shared_protocol.client import EngineClient

        with EngineClient(f"tcp://127.0.0.1:{port}", timeout=10) as c:
            assert c.ping()["server"]
        s.close()
        t.close()
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_1m_gaussian_scene_goes_up_and_comes_back_bit_exact_in_chunks(tmp_path):
    """1M Gaussians at SH degree 3 (236 MB): uploaded in chunks (no message over one chunk + header), the
    stored inputs equal the scene bit for bit, the result downloaded in chunks equals the engine's output;
    another client's pings are answered in < 100 ms meanwhile (the loop never touches the bytes' disk IO)."""
    e = ThreadedEngine(tmp_path / "s", SyntheticRunner(step_s=0.001))
    seen: list[tuple[str, int]] = []
    real = e.server._transfer

    def spy(identity, h, frames, who):
        seen.append((h.type, sum(memoryview(getattr(f, "buffer", f)).nbytes for f in frames)))
        return real(identity, h, frames, who)

    e.server._transfer = spy
    g = make_arrays(1_000_000, 16)
    try:
        with pinging(e) as lat, e.client(timeout=60) as c:
            job = c.submit(g, STYLE, settings={"steps": 1})
            stored = e.server.store.inputs(job.id)[0]
            assert _same(stored, g) and stored.extra == {}
            job.wait(timeout=60)
            result = job.result()
            assert _same(result, e.server.store.output(job.id)[0])
            assert job.report == e.server.store.output(job.id)[1]
    finally:
        e.stop()
    kinds = {k for k, _ in seen}
    assert {"upload_begin", "upload_chunk", "submit", "result_begin", "result_chunk"} <= kinds
    assert sum(k == "upload_chunk" for k, _ in seen) >= 236 // 8
    assert max(n for _, n in seen) <= T.CHUNK_BYTES + 4096
    assert list((tmp_path / "s" / "uploads").iterdir()) == []  # the committed upload is gone
    print(f"{len(lat)} pings, max {max(lat) * 1000:.0f} ms, p99 {np.percentile(lat, 99) * 1000:.0f} ms")
    assert len(lat) > 20
    assert np.percentile(lat, 99) < 0.1 and max(lat) < 0.35, f"a ping waited {max(lat):.2f} s"


def _raw(e: ThreadedEngine):
    """A client that speaks protocol 2 by hand (hello done) and sends single messages."""
    c = e.client()
    c.hello()
    return c


def _ask(c, msg):
    rid = uuid.uuid4().hex[:16]
    c._send(msg, rid, 5.0)
    while True:
        got = c._recv_one(5.0)
        assert got is not None, "no reply"
        if got[1] == rid:
            return got[0]


def test_uploads_are_bounded_per_client_per_chunk_and_in_time(tmp_path):
    e = ThreadedEngine(
        tmp_path / "s", SyntheticRunner(step_s=0.001), chunk_bytes=1 * MB, upload_timeout_s=0.5
    )
    try:
        c, other = _raw(e), e.client(token="f" * 32)
        ups = [_ask(c, T.UploadBegin(3 * MB)) for _ in range(2)]
        assert all(isinstance(u, T.UploadReady) and u.chunk_bytes == MB for u in ups)
        third = _ask(c, T.UploadBegin(10))
        assert isinstance(third, Error) and third.code == "busy" and "2 uploads open" in third.message
        big = _ask(c, T.UploadBegin(10 << 30))
        assert big.code == "too_large" and "max_upload_bytes" in big.message
        uid = ups[0].upload_id
        data = np.arange(MB, dtype=np.uint32).view(np.uint8)[:MB]
        over = _ask(c, T.UploadChunk(uid, 0, np.zeros(MB + 1, np.uint8)))
        assert over.code == "too_large" and "chunks are 1..1048576 bytes" in over.message
        gap = _ask(c, T.UploadChunk(uid, 5, data))
        assert gap.code == "invalid" and "expected 0" in gap.message
        assert _ask(c, T.UploadChunk(uid, 0, data)) == T.Uploaded(uid, MB)
        other.hello()
        theirs = _ask(other, T.UploadChunk(uid, MB, data))  # another client cannot add to (or see) it
        assert theirs.code == "not_found"
        body = {
            "settings": {},
            "upload_id": uid,
            "upload_arrays": [{"name": "style", "dtype": "|u1", "shape": [3 * MB]}],
        }
        early = _ask(c, T.SubmitUpload(body))
        assert early.code == "invalid" and "holds 1048576 of its 3145728 bytes" in early.message
        files = list((tmp_path / "s" / "uploads").iterdir())
        assert len(files) == 2 and all(f.stat().st_mode & 0o777 == 0o600 for f in files)
        deadline = time.monotonic() + 10  # expiry runs with the heartbeats (0.5 s here)
        while list((tmp_path / "s" / "uploads").iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list((tmp_path / "s" / "uploads").iterdir()) == []
        gone = _ask(c, T.UploadChunk(uid, MB, data))
        assert gone.code == "not_found" and "expired" in gone.message
        c.close()
        other.close()
    finally:
        e.stop()


def test_a_chunk_beyond_the_pending_bound_is_busy_and_retried(tmp_path):
    e = ThreadedEngine(tmp_path / "s", SyntheticRunner(step_s=0.001), chunk_bytes=256 * 1024)
    gate = threading.Event()
    import engine.server.transfers as tr

    real = tr.write_chunk
    tr.write_chunk = lambda *a: (gate.wait(10), real(*a))[1]  # writes stall until the gate opens
    try:
        c = _raw(e)
        up = _ask(c, T.UploadBegin(1 << 20))
        data = np.ones(256 * 1024, np.uint8)
        for k in range(3):  # sent without waiting: 2 may be pending, the third is refused
            c._send(T.UploadChunk(up.upload_id, k * data.nbytes, data), f"r{k}", 5.0)
        got = {}
        while "r2" not in got:
            m, rid = c._recv_one(5.0)
            got[rid] = m
        assert got["r2"].code == "busy" and "still being written" in got["r2"].message
        gate.set()
        while len(got) < 3:
            m, rid = c._recv_one(5.0)
            got[rid] = m
        assert got["r1"] == T.Uploaded(up.upload_id, 2 * data.nbytes)
        c.close()
        with e.client(timeout=20) as c2:  # the client's own upload waits out `busy` by itself
            job = c2.submit(make_arrays(20_000, 16), STYLE, settings={"steps": 1})
            assert job.wait(timeout=20)["state"] == "done"
            assert _same(job.result(), e.server.store.output(job.id)[0])
    finally:
        tr.write_chunk = real
        gate.set()
        e.stop()


def test_protocol_1_clients_still_submit_small_scenes_in_one_message(tmp_path):
    e = ThreadedEngine(tmp_path / "s", SyntheticRunner(step_s=0.001))
    try:
        with e.client() as c:
            c.hello()
            c.version = 1  # an older client: every header says v1, the result comes in one message
            g = make_arrays(2000, 16)
            job = c.submit(g, STYLE, settings={"steps": 1})
            assert _same(e.server.store.inputs(job.id)[0], g)
            job.wait(timeout=20)
            assert _same(job.result(), e.server.store.output(job.id)[0])
            with pytest.raises(VersionMismatch, match="needs protocol version 2"):
                c._request(T.UploadBegin(100))
            too_big = make_arrays(100_000, 16)  # 23.6 MB: over one message's 16 MiB
            with pytest.raises(RemoteError, match="over this engine's max_message_bytes") as ei:
                c.submit(too_big, STYLE)  # refused before sending (welcome.limits)
            assert ei.value.code == "too_large"
            body, arrays = Submit(too_big, STYLE).to_wire()
            c._sock.send_multipart(encode("submit", body, arrays, rid="big1", version=1))  # sent anyway
            msg, rid = c._recv_one(10.0)
            assert rid == "big1" and msg.code == "too_large" and "limit is 16777216" in msg.message
    finally:
        e.stop()


def test_a_header_declaring_too_many_frames_is_refused_at_once(tmp_path):
    e = ThreadedEngine(tmp_path / "s", SyntheticRunner(step_s=0.001))
    try:
        c = _raw(e)
        frames = encode("ping", {}, {"a": np.zeros(300, np.uint8)}, rid="x1", version=2, frame_bytes=1)
        c._sock.send_multipart(frames[:1] + [b"\0"] * 3)  # says 300 frames, sends 3: read no further
        msg, rid = c._recv_one(5.0)
        assert rid == "x1" and msg.code == "too_large" and "256" in msg.message
        assert c.ping()["server"]
        c.close()
    finally:
        e.stop()


@pytest.mark.skipif(os.name != "posix", reason="modes")
def test_result_file_for_chunked_download_is_private(tmp_path):
    e = ThreadedEngine(tmp_path / "s", SyntheticRunner(step_s=0.001))
    try:
        with e.client() as c:
            job = c.submit(make_arrays(500), STYLE, settings={"steps": 1})
            job.wait(timeout=20)
            assert job.result().num_gaussians == 500
            flat = tmp_path / "s" / "jobs" / job.id / "output" / "result.bin"
            assert flat.stat().st_mode & 0o777 == 0o600
            assert c.clean([job.id]) == [job.id] and not flat.exists()
    finally:
        e.stop()


def test_a_client_at_its_upload_cap_replaces_its_oldest_idle_upload(tmp_path):
    from engine.server.config import BusyError
    from engine.server.uploads import IDLE_REPLACE_S, Uploads

    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "stale.upload").write_bytes(b"x")  # left by a previous run: removed at start
    ups = Uploads(tmp_path / "up", chunk_bytes=MB, max_bytes=10 * MB, max_per_client=2)
    assert list((tmp_path / "up").iterdir()) == []
    a, b = ups.begin("user:a", 100), ups.begin("user:a", 100)
    with pytest.raises(BusyError):
        ups.begin("user:a", 100)  # both still active
    assert ups.begin("user:b", 100)  # the cap is per client
    a.touched -= IDLE_REPLACE_S + 1  # a failed upload its client will never finish
    c = ups.begin("user:a", 100)
    assert not a.path.exists() and b.path.exists() and c.path.exists()
    with pytest.raises(KeyError, match="expired"):
        ups.get("user:a", a.id)


def _greeting(mechanism: bytes = b"NULL") -> bytes:
    return b"\xff" + b"\0" * 8 + b"\x7f\x03\x00" + mechanism.ljust(20, b"\0") + b"\0" * 32


def test_guard_stream_check_cuts_a_message_over_the_bound_and_frees_its_budget():
    from engine.server.guard import Budget, StreamCheck, Violation

    budget = Budget(85)
    check = StreamCheck(max_message_bytes=50, max_frames=3, max_frame_bytes=40, budget=budget)
    out = b"".join(bytes(x) for x in check.feed(memoryview(_greeting())))
    assert out == _greeting()
    ready = b"\x04\x07\x05READYx"
    header = b"\x01\x0a" + b"h" * 10  # a 10-byte header frame, more to come
    ok = header + b"\x00\x05" + b"d" * 5  # ... and a last frame of 5: a whole message of 15 bytes
    assert b"".join(bytes(x) for x in check.feed(memoryview(ready + ok))) == ready + ok
    assert budget.used == 0 and check.cut == 0
    # 10 + 30 + 30 > 50: the engine gets the header and the first 30, then an empty last frame; the rest of
    # the client's message (the second 30 and its last frame) is dropped
    big = header + b"\x01\x1e" + b"a" * 30 + b"\x01\x1e" + b"b" * 30 + b"\x00\x01" + b"c"
    fed = b"".join(bytes(x) for x in check.feed(memoryview(big)))
    assert fed == header + b"\x01\x1e" + b"a" * 30 + b"\x00\x00" and check.cut == 1
    assert budget.used == 0
    assert b"".join(bytes(x) for x in check.feed(memoryview(ok))) == ok  # the next message passes
    long_frame = b"\x02" + (41).to_bytes(8, "big") + b"z" * 41  # one frame over max_frame_bytes
    assert check.feed(memoryview(long_frame)) == [] and check.cut == 2
    with pytest.raises(Violation, match="CURVE"):
        StreamCheck(50, 3, 40).feed(memoryview(_greeting(b"CURVE")))
    # unfinished messages of all connections share the budget: a frame past it waits, then gives up
    other = StreamCheck(50, 3, 40, budget=budget, message_timeout_s=0.3)
    other.feed(memoryview(_greeting()))
    assert check.feed(memoryview(b"\x01\x28" + b"x" * 40)) and budget.used == 40
    assert other.feed(memoryview(b"\x01\x28" + b"y" * 40)) and budget.used == 80
    t = time.monotonic()
    with pytest.raises(Violation, match="no room"):
        other.feed(memoryview(b"\x01\x0a"))
    assert time.monotonic() - t >= 0.25
    check.finish()  # its connection closed: its bytes leave the budget
    assert budget.used == 40


def test_guard_closes_an_unfinished_message_in_time_and_waits_for_slow_readers(tmp_path):
    from engine.server.guard import ZmtpGuard

    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    path = tmp_path / "e.sock"
    router.bind(f"ipc://{path}")
    guard = ZmtpGuard(("127.0.0.1", 0), str(path), 16 * MB, 8, 8 * MB, message_timeout_s=1.0)
    guard.start()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.RCVHWM, 1)
    try:
        dealer.connect(f"tcp://127.0.0.1:{guard.port}")
        dealer.send(b"hi")
        assert router.poll(5000)
        ident, _ = router.recv_multipart()
        blob = np.ones(4 * MB, np.uint8)
        for _ in range(10):  # 40 MiB to a client that reads nothing for 6 s: it waits, it is not cut off
            router.send_multipart([ident, blob], copy=False)
        time.sleep(6.0)
        got = 0
        while got < 10 and dealer.poll(5000):
            dealer.recv_multipart()
            got += 1
        assert got == 10 and guard.refused == 0
        s = _zmtp_null(guard.port)
        s.sendall(_zmtp_frame(b"x", more=True) + b"x")  # a message that never ends
        s.settimeout(10)
        t = time.monotonic()
        while s.recv(65536):  # the engine's greeting, then the guard closes the connection
            pass
        assert 0.9 < time.monotonic() - t < 8 and guard.refused == 1
        s.close()
    finally:
        guard.stop()
        dealer.close(0)
        router.close(0)
        ctx.term()


def test_a_chunked_submit_retried_while_its_commit_is_stored_uploads_once_and_makes_one_job(tmp_path):
    import engine.server.store as store_module

    e = ThreadedEngine(tmp_path / "s", SyntheticRunner(step_s=0.001))
    real_save, begins, saves = store_module.save_arrays, [], []
    real_transfer = e.server._transfer

    def slow_save(*a):  # storing the first commit takes longer than the client waits for its reply
        saves.append(1)
        time.sleep(1.5 if len(saves) == 1 else 0)
        return real_save(*a)

    def spy(identity, h, frames, who):
        begins.extend([h.type] if h.type == "upload_begin" else [])
        return real_transfer(identity, h, frames, who)

    store_module.save_arrays, e.server._transfer = slow_save, spy
    try:
        with e.client(timeout=1.0) as c:
            g = make_arrays(50_000, 16)  # 11.8 MB: uploaded in chunks
            job = c.submit(g, STYLE, settings={"steps": 1}, retries=1)
            assert begins == ["upload_begin"]  # the retry committed the same upload, none sent again
            assert [j["id"] for j in c.list_jobs()] == [job.id]
            assert _same(e.server.store.inputs(job.id)[0], g)
    finally:
        store_module.save_arrays = real_save
        e.stop()
