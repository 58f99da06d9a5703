"""`EngineServer`: a ZeroMQ ROUTER socket in front of the job store and the worker.

One thread (the loop) owns the socket: it answers requests, pushes the worker's progress/preview events to
the clients watching each job, and sends heartbeats. The worker thread posts events through a queue and
wakes the loop over an inproc socket. SIGTERM / a `shutdown` request: the worker checkpoints at its next
step, the job stays queued on disk, the engine exits; the next start resumes it.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import zmq

from shared_protocol import __version__ as engine_version
from shared_protocol.codec import CodecLimits, recv_message
from shared_protocol.errors import ProtocolError
from shared_protocol.fields import TERMINAL_STATES
from shared_protocol.messages import (
    Cancel,
    Clean,
    Cleaned,
    Error,
    Heartbeat,
    Hello,
    JobList,
    JobReply,
    ListJobs,
    Message,
    Ok,
    Ping,
    Pong,
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
    negotiate,
)

from .runners import JobRunner
from .security import SecurityError, is_loopback, setup_curve
from .store import JobStore
from .worker import Worker

log = logging.getLogger(__name__)
DEFAULT_ADDRESS = "tcp://127.0.0.1:5557"
DEFAULT_STATE_DIR = "~/.local/state/splatbrush"


@dataclass
class ServerConfig:
    address: str = DEFAULT_ADDRESS
    """Where to bind. Anything but loopback/ipc needs curve_secret_key and authorized_keys."""
    state_dir: str = DEFAULT_STATE_DIR
    """Folder of the job store (created if missing)."""
    device: str = "auto"
    """Device jobs run on when they ask for 'auto' (auto: cuda if available, else cpu)."""
    curve_secret_key: str | None = None
    """The server's .key_secret file (`splatbrush keys generate --name server`)."""
    authorized_keys: str | None = None
    """Folder of authorized client public .key files."""
    max_gaussians: int = 6_000_000
    max_resolution: int = 4096
    """Longest side of style images, cameras and the render size."""
    max_steps: int = 100_000
    max_views: int = 1024
    max_message_bytes: int = 1536 * 1024 * 1024
    heartbeat_s: float = 2.0
    """Seconds between heartbeats to watching clients."""
    shutdown_timeout_s: float = 120.0
    """How long SIGTERM waits for the running job to reach its checkpoint."""

    def limits(self) -> dict[str, Any]:
        keys = ("max_gaussians", "max_resolution", "max_steps", "max_views", "max_message_bytes")
        return {k: v for k, v in asdict(self).items() if k in keys}


def _devices() -> list[str]:
    """Devices jobs may ask for here (besides "auto")."""
    import torch

    out = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        out.append("mps")
    return out


class LimitError(ValueError):
    code = "limit"


class EngineServer:
    def __init__(
        self, config: ServerConfig, runner: JobRunner | None = None, context: zmq.Context | None = None
    ):
        if not is_loopback(config.address) and not (config.curve_secret_key and config.authorized_keys):
            raise SecurityError(
                f"refusing to bind {config.address} without CURVE keys: a non-loopback engine must encrypt "
                "and authenticate. Run `splatbrush keys generate --name server` (and one per client), then "
                "serve with --curve-secret-key server.key_secret --authorized-keys DIR_OF_CLIENT_KEYS"
            )
        if bool(config.curve_secret_key) != bool(config.authorized_keys):
            raise SecurityError("CURVE needs both --curve-secret-key and --authorized-keys")
        if runner is None:
            from .runners import StylizeRunner

            runner = StylizeRunner(config.device)
        self.config = config
        self.runner = runner
        self.codec_limits = CodecLimits(max_message_bytes=config.max_message_bytes)
        self.store = JobStore(config.state_dir)
        self._ctx = context or zmq.Context.instance()
        self._events: queue.Queue[Message] = queue.Queue()
        self._wake_addr = f"inproc://splatbrush-wake-{id(self)}"
        self._local = threading.local()
        self._stop = threading.Event()
        self._watchers: dict[str, set[bytes]] = {}
        self._auth = None
        self._sock: zmq.Socket | None = None
        self._wake: zmq.Socket | None = None
        self.worker = Worker(self.store, runner, self.post)
        self.bound_address: str | None = None
        self.name = f"splatbrush-engine/{engine_version} ({runner.name}, pid {os.getpid()})"
        self.devices = _devices()

    # ------------------------------------------------------------------------------------------ setup
    def start(self) -> None:
        """Bind, start the worker, requeue the jobs a previous run left unfinished."""
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.MAXMSGSIZE, self.codec_limits.max_frame_bytes)
        sock.setsockopt(zmq.SNDHWM, 10_000)
        sock.setsockopt(zmq.HEARTBEAT_IVL, 2000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 6000)
        sock.setsockopt(zmq.IPV6, int("[" in self.config.address))
        if self.config.curve_secret_key:
            self._auth = setup_curve(
                self._ctx, sock, self.config.curve_secret_key, self.config.authorized_keys
            )
        try:
            sock.bind(self.config.address)
        except zmq.ZMQError as e:
            sock.close(0)
            if self._auth:
                self._auth.stop()
            raise OSError(
                f"cannot bind {self.config.address}: {e} (is another engine running there?)"
            ) from None
        self.bound_address = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._sock = sock
        self._wake = self._ctx.socket(zmq.PULL)
        self._wake.bind(self._wake_addr)
        for job_id in self.store.recover():
            self.worker.enqueue(job_id)
        self.worker.start()
        log.info(
            "engine listening on %s (state %s, runner %s)",
            self.bound_address,
            self.store.root,
            self.runner.name,
        )

    def post(self, msg: Message) -> None:
        """Queue an event for the watchers of its job (any thread)."""
        self._events.put(msg)
        s = getattr(self._local, "wake", None)
        if s is None:
            s = self._local.wake = self._ctx.socket(zmq.PUSH)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(self._wake_addr)
        try:
            s.send(b"", zmq.NOBLOCK)
        except zmq.Again:
            pass  # the loop is already awake with plenty queued

    def request_stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------------------------------ loop
    def serve_forever(self) -> None:
        if self._sock is None:
            self.start()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
        assert self._sock is not None and self._wake is not None
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._wake, zmq.POLLIN)
        next_beat = time.monotonic() + self.config.heartbeat_s
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(timeout=200))
                if self._sock in ready:
                    for _ in range(64):  # bounded so events still flow under a flood of requests
                        if not self._handle_one():
                            break
                if self._wake in ready:
                    while True:
                        try:
                            self._wake.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                self._flush_events()
                if time.monotonic() >= next_beat:
                    self._heartbeat()
                    next_beat = time.monotonic() + self.config.heartbeat_s
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        log.info("engine stopping: checkpointing the running job")
        self.worker.stop()
        self.worker.join(self.config.shutdown_timeout_s)
        if self.worker.is_alive():
            log.warning(
                "worker did not stop within %.0f s; its job resumes from its last checkpoint",
                self.config.shutdown_timeout_s,
            )
        self._flush_events()
        if self._sock is not None:
            self._sock.close(linger=1000)  # let the last replies (e.g. to `shutdown`) go out
        if self._wake is not None:
            self._wake.close(0)
        if self._auth is not None:
            self._auth.stop()
        self._sock = self._wake = None
        log.info("engine stopped")

    def _send(self, identity: bytes, msg: Message, rid: str | None) -> bool:
        assert self._sock is not None
        try:
            frames = encode_message(msg, rid=rid)
        except ProtocolError as e:  # our own bug (e.g. a NaN in a report): tell the client instead
            frames = encode_message(Error("internal", f"engine could not encode its reply: {e}"), rid=rid)
        try:
            self._sock.send(identity, zmq.SNDMORE | zmq.NOBLOCK)
            for i, f in enumerate(frames):
                flags = zmq.SNDMORE if i < len(frames) - 1 else 0
                self._sock.send(f, flags, copy=len(f) < 65536)
            return True
        except zmq.ZMQError as e:  # peer gone (EHOSTUNREACH) or its queue is full (EAGAIN)
            log.debug("dropping %s to a client: %s", msg.TYPE, e)
            return False

    def _handle_one(self) -> bool:
        assert self._sock is not None
        try:
            prefix, decoded = recv_message(self._sock, self.codec_limits, flags=zmq.NOBLOCK, skip=1)
        except zmq.Again:
            return False
        except ProtocolError as e:  # bad frames: answer the sender if we know who it is
            prefix = getattr(e, "prefix", [])
            if prefix:
                self._send(prefix[0], Error(e.code, str(e)), getattr(e, "rid", None))
            return True
        identity = prefix[0]
        rid = decoded.rid
        try:
            msg, rid = message_from(decoded)
            reply = self._dispatch(identity, msg)
        except ProtocolError as e:
            reply = Error(e.code, str(e))
        except LimitError as e:
            reply = Error("limit", str(e))
        except KeyError as e:
            reply = Error("not_found", str(e.args[0]) if e.args else "not found")
        except ValueError as e:
            reply = Error("invalid", str(e))
        except Exception as e:  # keep answering whatever happens
            log.exception("error handling a request")
            reply = Error("internal", f"{type(e).__name__}: {e}")
        self._send(identity, reply, rid)
        if isinstance(reply, Ok) and reply.message == "shutting down":
            self.request_stop()
        return True

    # ------------------------------------------------------------------------------------------ requests
    def _job(self, job_id: str):
        info = self.store.get(job_id)
        if info is None:
            raise KeyError(f"no job {job_id} on this engine (`splatbrush jobs list` shows the known ones)")
        return info

    def _dispatch(self, identity: bytes, msg: Message) -> Message:
        if isinstance(msg, Hello):
            return Welcome(negotiate(msg.versions), self.name, self.config.limits(), self.devices)
        if isinstance(msg, Ping):
            return Pong(self.name, time.time(), self.store.counts())
        if isinstance(msg, Submit):
            return self._submit(identity, msg)
        if isinstance(msg, (Status, Watch)):
            info = self._job(msg.job_id)
            if isinstance(msg, Watch):
                self._watchers.setdefault(msg.job_id, set()).add(identity)
            return JobReply(info)
        if isinstance(msg, Unwatch):
            self._watchers.get(msg.job_id, set()).discard(identity)
            return Ok("unwatched")
        if isinstance(msg, Cancel):
            return JobReply(self._cancel(msg.job_id))
        if isinstance(msg, Result):
            info = self._job(msg.job_id)
            if info.state != "done":
                raise ValueError(f"job {info.id} is {info.state}; results exist only for done jobs")
            g, report = self.store.output(info.id)
            return ResultData(info.id, g, report)
        if isinstance(msg, ListJobs):
            return JobList(self.store.all())
        if isinstance(msg, Clean):
            ids = msg.job_ids if msg.job_ids is not None else [j.id for j in self.store.all()]
            removed = [j for j in ids if self.store.remove(j)]
            for j in removed:
                self._watchers.pop(j, None)
            return Cleaned(removed)
        if isinstance(msg, Shutdown):
            return Ok("shutting down")
        raise ProtocolError(f"{msg.TYPE!r} is not a request an engine answers")

    def _submit(self, identity: bytes, msg: Submit) -> Message:
        c, g, s = self.config, msg.gaussians, msg.settings
        if g.num_gaussians > c.max_gaussians:
            raise LimitError(f"{g.num_gaussians} Gaussians exceed this engine's limit of {c.max_gaussians}")
        h, w = msg.style_image.shape[:2]
        if max(h, w) > c.max_resolution:
            raise LimitError(
                f"style image {w}x{h} exceeds the max resolution {c.max_resolution}; downscale it"
            )
        if s.steps is not None and s.steps > c.max_steps:
            raise LimitError(f"steps={s.steps} exceeds this engine's limit of {c.max_steps}")
        if s.size is not None and s.size > c.max_resolution:
            raise LimitError(f"size={s.size} exceeds the max resolution {c.max_resolution}")
        if s.views is not None and s.views > c.max_views:
            raise LimitError(f"views={s.views} exceeds this engine's limit of {c.max_views}")
        for cam in msg.cameras or []:
            if max(cam["width"], cam["height"]) > c.max_resolution:
                raise LimitError(
                    f"camera {cam['name']!r} is {cam['width']}x{cam['height']}, over {c.max_resolution}"
                )
        if msg.cameras is not None and len(msg.cameras) > c.max_views:
            raise LimitError(f"{len(msg.cameras)} cameras exceed this engine's limit of {c.max_views}")
        self.runner.validate(s)  # ValueError: unknown preset, device not here
        total = self.runner.total_steps(s)
        if total > c.max_steps:
            raise LimitError(
                f"preset {s.preset!r} runs {total} steps, over this engine's limit of {c.max_steps}"
            )
        info = self.store.create(g, msg.style_image, msg.cameras, s, self.runner.overrides(), msg.name)
        info = self.store.update(info.id, total_steps=total)
        if msg.watch:
            self._watchers.setdefault(info.id, set()).add(identity)
        self.worker.enqueue(info.id)
        log.info("job %s: queued (%d Gaussians)", info.id, g.num_gaussians)
        return JobReply(info)

    def _cancel(self, job_id: str):
        info = self._job(job_id)
        if info.state in TERMINAL_STATES:
            return info
        self.worker.cancel(job_id)
        if info.state == "queued" and self.worker.current != job_id:
            info = self.store.update(job_id, state="cancelled", finished=time.time(), phase="cancelled")
            self.post(Progress(job_id, "cancelled", info.step, info.total_steps, "cancelled"))
        return info

    # ------------------------------------------------------------------------------------------ events
    def _flush_events(self) -> None:
        while True:
            try:
                msg = self._events.get_nowait()
            except queue.Empty:
                return
            job_id = getattr(msg, "job_id", None)
            for ident in list(self._watchers.get(job_id, ())):
                if not self._send(ident, msg, None) and isinstance(msg, Progress):
                    pass  # a slow or gone client misses events; it catches up with status/watch

    def _heartbeat(self) -> None:
        idents = set().union(*self._watchers.values()) if self._watchers else set()
        beat = Heartbeat(time.time(), self.name)
        for ident in idents:
            if not self._send(ident, beat, None):
                for s in self._watchers.values():
                    s.discard(ident)


def serve(config: ServerConfig, runner: JobRunner | None = None) -> None:
    """Run an engine in this process until SIGTERM, Ctrl-C or a shutdown request."""
    server = EngineServer(config, runner)
    server.start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


__all__ = ["DEFAULT_ADDRESS", "DEFAULT_STATE_DIR", "EngineServer", "ServerConfig", "serve"]
