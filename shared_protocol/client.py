"""`EngineClient`: talk to a Splatbrush engine (`splatbrush serve`) from scripts or the Blender add-on.

Pure Python + numpy + pyzmq (no torch). Not thread-safe: use one client per thread. Typical use:

    c = EngineClient("tcp://127.0.0.1:5557")
    job = c.submit(gaussians=arrays, style_image=img, settings={"preset": "fast", "steps": 200})
    for ev in job.progress():          # blocking; ends after the job reaches done/failed/cancelled
        print(ev.step, ev.total_steps, ev.losses)
    stylized = job.result()            # SplatArrays; job.report holds the engine's report dict

From a GUI timer use `job.poll()` instead of `progress()`: it never blocks and returns the events that
arrived since the last call. After a disconnect, `EngineClient(...).attach(job_id)` gets a handle back.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import zmq

from . import fields as F
from . import transfer
from .admin import Adopt
from .codec import DEFAULT_LIMITS, CodecLimits, recv_message
from .credentials import check_submit_limits, load_key, load_token
from .errors import (
    EngineUnavailable,
    JobCancelled,
    JobFailed,
    ProtocolError,
    RemoteError,
    VersionMismatch,
)
from .events import ProgressEvent
from .messages import (
    SUPPORTED_VERSIONS,
    Cancel,
    Clean,
    Cleaned,
    Error,
    Hello,
    JobInfo,
    JobList,
    JobReply,
    JobSettings,
    ListJobs,
    Message,
    Ok,
    Ping,
    Pong,
    Preview,
    Progress,
    Result,
    ResultData,
    Shutdown,
    Status,
    Submit,
    Unwatch,
    Watch,
    Welcome,
    encode_message,
    message_from,
    splat_from_arrays,
)
from .splatfile.arrays import SplatArrays

DEFAULT_ADDRESS = "tcp://127.0.0.1:5557"
TRANSFER_RATE = 200e6
"""Bytes/s assumed when stretching a request's timeout for a big payload."""


JobEvent = ProgressEvent
"""A job's progress or preview event (`ev.kind`: "progress" | "preview"); the one event class of Splatbrush,
`shared_protocol.events.ProgressEvent` (job_id, state, step, total_steps, phase, losses, message, preview,
elapsed_s)."""


def _info_event(info: JobInfo) -> ProgressEvent:
    return ProgressEvent(
        info.step,
        info.total_steps,
        info.phase,
        dict(info.losses),
        job_id=info.id,
        state=info.state,
        message=info.error or "",
    )


class JobHandle:
    """A job on the engine. Events arrive only while the client watches it (submit and attach do)."""

    def __init__(self, client: EngineClient, job_id: str, info: JobInfo | None = None):
        self.client = client
        self.id = F.job_id("job id", job_id)
        self.info = info
        self.report: dict[str, Any] | None = None
        """The engine's report dict, set by result()."""

    def __repr__(self) -> str:
        return f"JobHandle({self.id!r}, state={self.info.state if self.info else '?'})"

    @property
    def state(self) -> str | None:
        return self.info.state if self.info else None

    def status(self) -> dict[str, Any]:
        self.info = self.client._request(Status(self.id)).job  # type: ignore[attr-defined]
        return self.info.to_dict()

    def cancel(self) -> dict[str, Any]:
        self.info = self.client._request(Cancel(self.id)).job  # type: ignore[attr-defined]
        return self.info.to_dict()

    def watch(self) -> dict[str, Any]:
        """(Re)subscribe to events, e.g. after the engine restarted. Returns the current status."""
        self.info = self.client._request(Watch(self.id)).job  # type: ignore[attr-defined]
        self.client._watched.add(self.id)
        return self.info.to_dict()

    def unwatch(self) -> None:
        self.client._watched.discard(self.id)
        self.client._request(Unwatch(self.id))

    def poll(self) -> list[JobEvent]:
        """Events received since the last call. Never blocks and never raises for a silent engine (check
        `client.seconds_since_heard()` to notice one); meant for GUI timers such as bpy.app.timers."""
        self.client._drain(0)
        q = self.client._events.get(self.id)
        out = list(q) if q else []
        if q:
            q.clear()
        for ev in out:
            self._note(ev)
        return out

    def _note(self, ev: JobEvent) -> None:
        if self.info is not None and ev.kind == "progress":
            self.info.state, self.info.step, self.info.total_steps = ev.state, ev.step, ev.total_steps

    def progress(self, timeout: float | None = None, stall: float = 5.0) -> Iterator[JobEvent]:
        """Blocking iterator of events until the job is done, failed or cancelled (the last event yielded has
        that state). Raises EngineUnavailable when the engine stops answering, TimeoutError on `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        info = JobInfo.from_dict(self.watch())
        yield _info_event(info)
        if info.state in F.TERMINAL_STATES:
            return
        quiet_since = time.monotonic()
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} still {self.state} after {timeout:g} s")
            wait = stall if deadline is None else max(0.0, min(stall, deadline - time.monotonic()))
            self.client._drain(wait, until_job=self.id)
            events = self.poll()
            for ev in events:
                yield ev
                if ev.kind == "progress" and ev.finished:
                    return
            if events:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= stall:
                # no event for a while: make sure the engine is alive and we are still subscribed (it may
                # have restarted); raises EngineUnavailable if nothing answers
                st = JobInfo.from_dict(self.watch())
                quiet_since = time.monotonic()
                if st.state in F.TERMINAL_STATES:
                    yield _info_event(st)
                    return

    def wait(self, timeout: float | None = None, poll_interval: float = 1.0) -> dict[str, Any]:
        """Block until the job reaches a terminal state; returns its status dict."""
        deadline = None if timeout is None else time.monotonic() + timeout
        st = self.watch()
        while st["state"] not in F.TERMINAL_STATES:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} still {st['state']} after {timeout:g} s")
            left = (
                poll_interval
                if deadline is None
                else max(0.0, min(poll_interval, deadline - time.monotonic()))
            )
            self.client._drain(left, until_job=self.id)
            self.poll()
            st = self.status()
        return st

    def result(self, timeout: float | None = None) -> SplatArrays:
        """Wait for the job, then fetch the stylized Gaussians (the engine's report goes to `self.report`).
        Raises JobFailed / JobCancelled when the job ended without a result."""
        st = self.wait(timeout)
        if st["state"] == "failed":
            raise JobFailed(f"job {self.id} failed: {st.get('error')}")
        if st["state"] == "cancelled":
            raise JobCancelled(f"job {self.id} was cancelled")
        if self.client.version is None:
            self.client.hello()
        if (self.client.version or 1) >= 2:  # in chunks: no message bigger than one chunk
            arrays, self.report = transfer.download(self.client, self.id, TRANSFER_RATE)
            return splat_from_arrays(arrays, "result")
        nbytes = 240 * int(st.get("num_gaussians") or 0)  # about 236 bytes per Gaussian at SH degree 3
        reply = self.client._request(
            Result(self.id), timeout=self.client.timeout + 2 * nbytes / TRANSFER_RATE
        )
        assert isinstance(reply, ResultData)
        self.report = reply.report
        return reply.gaussians


class EngineClient:
    """Client of one engine. `server_public_key` (z85 or the server's .key file) and `client_keys` (this
    client's .key_secret file or a (public, secret) pair) switch on CURVE encryption and authentication."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        server_public_key: bytes | str | os.PathLike | None = None,
        client_keys: tuple[bytes, bytes] | str | os.PathLike | None = None,
        timeout: float = 10.0,
        limits: CodecLimits = DEFAULT_LIMITS,
        context: zmq.Context | None = None,
        token: str | None = None,
    ):
        """`token`: this user's client token (default: `load_token()`, ~/.config/splatbrush/client.token); a
        loopback engine shows a client only the jobs submitted with the same token."""
        self.address = address
        self.token = token if token is not None else load_token()
        self.timeout = float(timeout)
        self.limits = limits
        self.version: int | None = None
        self.welcome: Welcome | None = None
        self._ctx = context or zmq.Context.instance()
        self._events: dict[str, deque[JobEvent]] = {}
        self._watched: set[str] = set()
        self._last_heard = 0.0
        self._curve: tuple[bytes, bytes, bytes] | None = None
        if server_public_key is not None:
            if client_keys is None:
                raise ValueError(
                    "a CURVE server needs client_keys too (`splatbrush keys generate --name client`)"
                )
            server_pub, _ = load_key(server_public_key, secret=False)
            if isinstance(client_keys, tuple):
                cpub, csec = client_keys
            else:
                cpub, csec = load_key(client_keys, secret=True)
            self._curve = (server_pub, cpub, csec)  # type: ignore[assignment]
        elif client_keys is not None:
            raise ValueError("client_keys given without server_public_key")
        self._sock: zmq.Socket | None = None
        self._connect()

    # ------------------------------------------------------------------------------------------ socket
    def _connect(self) -> None:
        s = self._ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.IMMEDIATE, 1)  # never queue requests for an engine that is not connected
        s.setsockopt(zmq.MAXMSGSIZE, self.limits.max_frame_bytes)
        s.setsockopt(zmq.HEARTBEAT_IVL, 2000)
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 6000)
        s.setsockopt(zmq.IPV6, int("[" in self.address))
        if self._curve is not None:
            s.curve_serverkey, s.curve_publickey, s.curve_secretkey = self._curve
        s.connect(self.address)
        self._sock = s

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def seconds_since_heard(self) -> float:
        """Seconds since the engine last sent anything (inf if never)."""
        return time.monotonic() - self._last_heard if self._last_heard else float("inf")

    def _reconnect(self) -> None:
        self.close()
        self._connect()
        self.version = None
        self._watched.clear()

    def _send(self, msg: Message, rid: str | None, timeout: float) -> None:
        frames = encode_message(msg, rid=rid, version=self.version or max(SUPPORTED_VERSIONS))
        assert self._sock is not None, "client is closed"
        if not self._sock.poll(int(timeout * 1000), zmq.POLLOUT):
            raise EngineUnavailable(self.address, timeout, "not connected")
        copy_each = [len(f) < 65536 for f in frames]
        for i, f in enumerate(frames):
            more = zmq.SNDMORE if i < len(frames) - 1 else 0
            self._sock.send(f, more, copy=copy_each[i])

    def _handle_event(self, msg: Message) -> None:
        if isinstance(msg, (Progress, Preview)):
            ev = msg.to_event()
        else:
            return  # heartbeat: only refreshes _last_heard
        q = self._events.setdefault(msg.job_id, deque(maxlen=10_000))
        q.append(ev)

    def _recv_one(self, timeout: float) -> tuple[Message, str | None] | None:
        assert self._sock is not None, "client is closed"
        if not self._sock.poll(int(max(0.0, timeout) * 1000), zmq.POLLIN):
            return None
        try:
            _, decoded = recv_message(self._sock, self.limits)
        finally:
            self._last_heard = time.monotonic()
        return message_from(decoded)

    def _drain(self, timeout: float, until_job: str | None = None) -> None:
        """Route every waiting event into its job queue; with timeout > 0 wait up to that long for the first
        one (returning early once an event for `until_job` arrived)."""
        end = time.monotonic() + timeout
        while True:
            try:
                got = self._recv_one(max(0.0, end - time.monotonic()))
            except ProtocolError:
                continue  # a malformed message from the engine is dropped, not fatal
            if got is None:
                return
            msg, rid = got
            if rid is None:
                self._handle_event(msg)
                if until_job is not None and getattr(msg, "job_id", None) == until_job:
                    end = 0.0  # keep draining what is already there, then return
            # replies to requests that already timed out (rid set) are dropped

    def _request(self, msg: Message, timeout: float | None = None) -> Message:
        if self.version is None and not isinstance(msg, Hello):
            self.hello()
        t = self.timeout if timeout is None else timeout
        reply = self._exchange(msg, t)
        if isinstance(reply, Error) and reply.code == "hello_required" and not isinstance(msg, Hello):
            self.hello()  # the engine restarted (or forgot this connection): say who we are, ask again
            reply = self._exchange(msg, t)
        if isinstance(reply, Error):
            if reply.code == "version_mismatch":
                raise VersionMismatch(reply.message)
            raise RemoteError(reply.code, reply.message)
        return reply

    def _exchange(self, msg: Message, t: float) -> Message:
        """Send `msg`, return the reply that carries its request id (events on the way are queued)."""
        rid = uuid.uuid4().hex[:16]
        self._send(msg, rid, t)
        end = time.monotonic() + t
        while True:
            got = self._recv_one(end - time.monotonic())
            if got is None:
                raise EngineUnavailable(self.address, t, f"no reply to {msg.TYPE}")
            reply, rrid = got
            if rrid is None:
                self._handle_event(reply)
            elif rrid == rid:
                return reply

    # ------------------------------------------------------------------------------------------ API
    def hello(self) -> Welcome:
        """Negotiate the protocol version (done automatically before the first request)."""
        hello = Hello(list(SUPPORTED_VERSIONS), client=f"splatbrush-client/{os.getpid()}", token=self.token)
        reply = self._request(hello)
        if not isinstance(reply, Welcome):
            raise ProtocolError(f"engine answered hello with {reply.TYPE!r}")
        self.version, self.welcome = reply.version, reply
        return reply

    def ping(self, timeout: float | None = None) -> dict[str, Any]:
        """{"server", "time", "jobs", "version", "rtt_s"}; raises EngineUnavailable when nothing answers."""
        t0 = time.perf_counter()
        reply = self._request(Ping(), timeout=timeout)
        assert isinstance(reply, Pong)
        return {
            "server": reply.server,
            "time": reply.time,
            "jobs": reply.jobs,
            "version": self.version,
            "rtt_s": time.perf_counter() - t0,
        }

    def submit(
        self,
        gaussians: SplatArrays,
        style_image: np.ndarray,
        cameras: list[dict[str, Any]] | None = None,
        settings: dict[str, Any] | None = None,
        name: str = "",
        watch: bool = True,
        idempotency_key: str | None = None,
        retries: int = 1,
    ) -> JobHandle:
        """Queue a stylization job. `style_image` is uint8 [H, W, 3]; `cameras` in Camera.to_dict() form
        (None: the engine picks views around the scene); settings: preset, steps, size, views, seed, device
        (see JobSettings). A submit that times out is sent again (`retries` times) with the same
        `idempotency_key` (default: a new random one), so the engine never makes a second job of it."""
        msg = Submit(
            gaussians,
            np.ascontiguousarray(style_image),
            cameras,
            JobSettings.from_dict(settings or {}),
            name,
            watch,
            idempotency_key or uuid.uuid4().hex,
        )
        # validate locally first: the same checks the engine does, with the same messages
        body, arrays = msg.to_wire()
        Submit.from_wire(body, arrays)
        nbytes = sum(a.nbytes for a in arrays.values())
        if self.version is None:
            self.hello()
        limits = self.welcome.limits if self.welcome else {}
        chunked = (self.version or 1) >= 2 and nbytes > int(limits.get("chunk_bytes") or transfer.CHUNK_BYTES)
        size_key = "max_upload_bytes" if chunked else "max_message_bytes"  # a chunked submit: the upload
        limit = limits.get(size_key)
        if isinstance(limit, int) and nbytes > limit:
            raise RemoteError(
                "too_large",
                f"the submit is {nbytes / 2**20:.0f} MiB, over this engine's {size_key} of {limit} (checked "
                "before sending)",
            )
        others = {k: v for k, v in limits.items() if k not in ("max_message_bytes", "max_upload_bytes")}
        check_submit_limits(others, msg, nbytes)
        timeout = self.timeout + nbytes / TRANSFER_RATE
        if chunked:
            attempt = transfer.chunked_submit(self, body, arrays, TRANSFER_RATE)
        else:
            attempt = lambda t: self._request(msg, timeout=t)  # noqa: E731
        tries, patience = 0, time.monotonic() + timeout
        while True:
            try:
                reply = attempt(timeout)
                break
            except EngineUnavailable:
                if tries == retries:
                    raise
                tries += 1
                self._reconnect()
                patience = time.monotonic() + timeout  # the first try may still be stored: wait for it
            except RemoteError as e:  # the first try is still being stored: wait for it, not a 2nd job
                if e.code not in ("in_progress", "busy") or time.monotonic() > patience:
                    raise
                time.sleep(0.2)
        assert isinstance(reply, JobReply)
        if watch:
            self._watched.add(reply.job.id)
        return JobHandle(self, reply.job.id, reply.job)

    def attach(self, job_id: str, watch: bool = True) -> JobHandle:
        """A handle to an existing job (e.g. after reconnecting); raises RemoteError(not_found) if unknown."""
        h = JobHandle(self, job_id)
        h.watch() if watch else h.status()
        return h

    def list_jobs(self) -> list[dict[str, Any]]:
        reply = self._request(ListJobs())
        assert isinstance(reply, JobList)
        return [j.to_dict() for j in reply.jobs]

    def clean(self, job_ids: list[str] | None = None) -> list[str]:
        """Delete finished jobs (all of them, or the given ids) on the engine; returns the removed ids."""
        reply = self._request(Clean(job_ids))
        assert isinstance(reply, Cleaned)
        return reply.removed

    def adopt(self, job_ids: list[str] | None = None, owner: str | None = None) -> list[dict[str, Any]]:
        """Admin: give jobs stored before ownership existed an owner (this client, or `owner`: "curve:<z85
        key>", "user:<hash>"); None: every such job. Returns the adopted jobs."""
        reply = self._request(Adopt(job_ids, owner))
        assert isinstance(reply, JobList)
        return [j.to_dict() for j in reply.jobs]

    def shutdown(self) -> str:
        """Ask the engine to checkpoint its running job and exit."""
        reply = self._request(Shutdown())
        assert isinstance(reply, Ok)
        return reply.message


__all__ = ["DEFAULT_ADDRESS", "EngineClient", "JobEvent", "JobHandle"]
