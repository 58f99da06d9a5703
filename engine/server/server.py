"""`EngineServer`: a ZeroMQ ROUTER socket in front of the job store and its workers (engine.server.pool).

One thread (the loop) owns the socket: it answers requests, pushes the workers' progress/preview events to
the clients watching each job, and sends heartbeats. Worker threads (one by default, one per device with
`devices`) post events through a queue and wake the loop over an inproc socket. SIGTERM / a `shutdown`
request: every worker checkpoints at its next step, the jobs stay queued on disk, the engine exits; the next
start resumes them.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import zmq

from shared_protocol import __version__ as engine_version
from shared_protocol.codec import CodecLimits, decode, parse_header
from shared_protocol.credentials import load_token
from shared_protocol.errors import ProtocolError
from shared_protocol.messages import Error, Heartbeat, Message, encode_message

from .access import Access, Unauthorized
from .config import DEFAULT_ADDRESS, DEFAULT_STATE_DIR, BusyError, LimitError, ServerConfig
from .guard import ZmtpGuard
from .handlers import RequestHandlers, error_reply
from .outbox import Outbox
from .pool import WorkerPool, runner_for, worker_devices
from .runners import JobRunner
from .security import KeyRing, SecurityError, is_loopback, setup_curve
from .store import JobStore
from .transfers import TransferHandlers, is_transfer
from .uploads import Uploads

log = logging.getLogger(__name__)
SNDHWM = 1000
"""Messages queued per client; the bytes of big ones are bounded by the Outbox."""
RCVHWM = 100
"""Whole messages libzmq queues per client before the loop reads them (each bounded by the codec limits)."""
SMALL_ARRAYS_BYTES = 1 << 20
"""Only a submit carries more array bytes than this; any other such message is refused undecoded."""


def _devices() -> list[str]:
    """Devices jobs may ask for here (besides "auto")."""
    import torch

    out = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        out.append("mps")
    return out


def _access(config: ServerConfig) -> Access:
    if config.curve_secret_key:
        clients = KeyRing(config.authorized_keys or "")
        admins = KeyRing(config.admin_keys, "admin keys") if config.admin_keys else None
        access = Access(clients, admins)
        access.check_keys()
        return access
    token = load_token(config.admin_token_file) if config.admin_token_file else load_token()
    return Access(admin_token=token)


class EngineServer(RequestHandlers, TransferHandlers):
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
        devices = worker_devices(config.device, config.workers, config.devices)  # ValueError: bad devices
        if runner is None:
            from .runners import StylizeRunner

            runner = StylizeRunner(config.device)
        if config.devices:  # submits are checked (device, memory) against the first worker's device
            runner = runner_for(runner, devices[0])
        self.config = config
        self.runner = runner
        self.codec_limits = CodecLimits(
            max_message_bytes=config.max_message_bytes,
            frame_bytes=config.chunk_bytes,
            max_frames=config.max_frames,
        )
        self.store = JobStore(config.state_dir)
        self.uploads = Uploads(
            self.store.root / "uploads",
            config.chunk_bytes,
            config.max_upload_bytes,
            config.max_uploads_per_client,
            config.upload_timeout_s,
        )
        self.access = _access(config)
        self._ctx = context or zmq.Context.instance()
        self._events: queue.Queue[Message] = queue.Queue()
        self._wake_addr = f"inproc://splatbrush-wake-{id(self)}"
        self._local = threading.local()
        self._stop = threading.Event()
        self._watchers: dict[str, set[bytes]] = {}
        self._done: queue.Queue[tuple[bytes, str | None, int, object]] = queue.Queue()
        self._inflight = 0
        self._inflight_limit = config.inflight_bytes or max(
            4 * config.max_message_bytes, 8 * config.chunk_bytes
        )
        self._io = ThreadPoolExecutor(max(1, config.io_threads), thread_name_prefix="splatbrush-io")
        self.outbox: Outbox | None = None
        self._auth = None
        self.guard: ZmtpGuard | None = None
        self._sock: zmq.Socket | None = None
        self._wake: zmq.Socket | None = None
        self.pool = WorkerPool(self.store, runner, self.post, devices)
        self.bound_address: str | None = None
        workers = f", {len(devices)} workers" if len(devices) > 1 else ""
        self.name = f"splatbrush-engine/{engine_version} ({runner.name}{workers}, pid {os.getpid()})"
        self.devices = _devices()

    # ------------------------------------------------------------------------------------------ setup
    def start(self) -> None:
        """Bind, start the workers, requeue the jobs a previous run left unfinished."""
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.MAXMSGSIZE, self.codec_limits.max_frame_bytes)
        sock.setsockopt(zmq.SNDHWM, SNDHWM)
        sock.setsockopt(zmq.HEARTBEAT_IVL, 2000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 6000)
        sock.setsockopt(zmq.IPV6, int("[" in self.config.address))
        sock.setsockopt(zmq.RCVHWM, RCVHWM)
        if self.config.curve_secret_key:
            self._auth = setup_curve(self._ctx, sock, self.config.curve_secret_key, self.access)
        try:
            self.bound_address = self._bind(sock)
        except (zmq.ZMQError, OSError) as e:
            sock.close(0)
            if self._auth:
                self._auth.stop()
            raise OSError(
                f"cannot bind {self.config.address}: {e} (is another engine running there?)"
            ) from None
        self._sock = sock
        self.outbox = Outbox(sock, self.config.client_queue_bytes, self.config.total_queue_bytes)
        self._wake = self._ctx.socket(zmq.PULL)
        self._wake.bind(self._wake_addr)
        for job_id in self.store.recover():
            self.pool.enqueue(job_id)
        self.pool.start()
        log.info(
            "engine listening on %s (state %s, runner %s, %d worker(s): %s)",
            self.bound_address,
            self.store.root,
            self.runner.name,
            len(self.pool),
            ", ".join(self.pool.devices),
        )

    def _bind(self, sock: zmq.Socket) -> str:
        """Bind, behind the ZMTP guard when it applies (a plain tcp engine: engine.server.guard); returns
        the address clients connect to."""
        m = re.fullmatch(r"tcp://(\[[^\]]+\]|[^:/]+):(\d+)", self.config.address)
        if not (self.config.guard and m and not self.config.curve_secret_key and os.name == "posix"):
            sock.bind(self.config.address)
            return sock.getsockopt_string(zmq.LAST_ENDPOINT)
        host, lim = m.group(1).strip("[]"), self.codec_limits
        run = self.store.root / "run"  # 0700 like the state dir: other users cannot reach the engine there
        run.mkdir(mode=0o700, exist_ok=True)
        path = run / "engine.sock"
        if len(str(path)) > 100:  # AF_UNIX paths are short
            path = Path(tempfile.mkdtemp(prefix="splatbrush-")) / "engine.sock"
        guard = ZmtpGuard(  # binds the public address first: fails there if another engine runs
            (host, int(m.group(2))), str(path), lim.max_message_bytes, lim.max_frames, lim.max_frame_bytes
        )
        try:
            path.unlink(missing_ok=True)
            sock.bind(f"ipc://{path}")
        except BaseException:
            guard.stop()
            raise
        self.guard = guard
        self.guard.start()
        return f"tcp://{m.group(1)}:{self.guard.port}"

    def post(self, msg: Message) -> None:
        """Queue an event for the watchers of its job (any thread)."""
        self._events.put(msg)
        self._wake_loop()

    def _wake_loop(self) -> None:
        s = getattr(self._local, "wake", None)
        if s is None:
            s = self._local.wake = self._ctx.socket(zmq.PUSH)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(self._wake_addr)
        try:
            s.send(b"", zmq.NOBLOCK)
        except zmq.Again:
            pass  # the loop is already awake with plenty queued

    def _offload(self, identity: bytes, rid: str | None, nbytes: int, task: Callable[[], object]) -> None:
        """Run `task` (a request's answer: a reply, or (reply, after)) in an IO thread; the loop sends the
        reply. Received bytes waiting there are bounded (`inflight_bytes`): beyond, `busy`."""
        if nbytes and self._inflight and self._inflight + nbytes > self._inflight_limit:
            raise BusyError(
                f"the engine is still storing {self._inflight / 2**20:.0f} MiB of earlier submits; retry soon"
            )
        self._inflight += nbytes

        def run() -> None:
            try:
                out = task()
            except BaseException as e:  # answered as an error by the loop
                out = e
            self._done.put((identity, rid, nbytes, out))
            self._wake_loop()

        self._io.submit(run)

    def request_stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------------------------------ loop
    def serve_forever(self) -> None:
        if self._sock is None:
            self.start()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
            if hasattr(signal, "SIGHUP"):
                signal.signal(signal.SIGHUP, lambda *_: self.access.reload())
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
                self._flush_done()
                self._flush_events()
                if time.monotonic() >= next_beat:
                    self._heartbeat()
                    self.uploads.expire()
                    next_beat = time.monotonic() + self.config.heartbeat_s
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        log.info("engine stopping: checkpointing the running job(s)")
        self.pool.stop()
        for w in self.pool.join(self.config.shutdown_timeout_s):
            log.warning(
                "%s did not stop within %.0f s; its job resumes from its last checkpoint",
                w.name,
                self.config.shutdown_timeout_s,
            )
        self._io.shutdown(wait=True, cancel_futures=True)
        self._flush_done()
        self._flush_events()
        if self._sock is not None:
            self._sock.close(linger=1000)  # let the last replies (e.g. to `shutdown`) go out
        if self._wake is not None:
            self._wake.close(0)
        if self._auth is not None:
            self._auth.stop()
        if self.guard is not None:
            self.guard.stop()
        self._sock = self._wake = None
        log.info("engine stopped")

    def _send(self, identity: bytes, msg: Message, rid: str | None, event: bool = False) -> bool:
        """Send a reply (or, `event`, an event: dropped rather than queued past the client's byte bound)."""
        assert self.outbox is not None
        try:
            frames = encode_message(msg, rid=rid)
        except ProtocolError as e:  # our own bug (e.g. a NaN in a report): tell the client instead
            frames = encode_message(Error("internal", f"engine could not encode its reply: {e}"), rid=rid)
        nbytes = sum(memoryview(f).nbytes for f in frames)
        why = self.outbox.room_for(identity, nbytes)
        if why is not None:
            if event:
                return False
            log.info("refusing a %.0f MiB %s to a client: %s", nbytes / 2**20, msg.TYPE, why)
            frames = encode_message(Error("busy", f"{why}; read them, then ask again"), rid=rid)
        try:
            self.outbox.send(identity, frames)
            return True
        except zmq.ZMQError as e:  # peer gone (EHOSTUNREACH) or its queue is full (EAGAIN)
            log.debug("dropping %s to a client: %s", msg.TYPE, e)
            if e.errno == zmq.EHOSTUNREACH:
                self.outbox.forget(identity)
            return False

    def _handle_one(self) -> bool:
        """Receive one request and answer it (or hand it to an IO thread). The header is checked before
        anything else is looked at; array frames are taken as zmq holds them (no copy here): a submit is
        decoded, checked and stored by an IO thread, so a big one never stalls the loop."""
        assert self._sock is not None
        sock = self._sock
        try:
            first = sock.recv(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        identity = first.bytes
        if not sock.getsockopt(zmq.RCVMORE):
            return True  # an identity with nothing after it: nothing to answer
        user_id = first.get("User-Id") if self.access.curve else None
        rid = None
        try:
            head = sock.recv(copy=False)
            h = parse_header(head, self.codec_limits)  # raises with .rid when one was readable
            rid = h.rid
            frames = [head]
            for _ in range(sum(a.frames for a in h.specs)):
                if not sock.getsockopt(zmq.RCVMORE):
                    break  # decode() names what is missing
                frames.append(sock.recv(copy=False))
            if sock.getsockopt(zmq.RCVMORE):
                raise ProtocolError("message has frame(s) beyond those the header declares")
        except ProtocolError as e:
            while sock.getsockopt(zmq.RCVMORE):
                sock.recv(copy=False)
            self._send(identity, Error(e.code, str(e)), rid or getattr(e, "rid", None))
            return True
        nbytes = sum(a.nbytes for a in h.specs)
        try:
            who = self.access.principal(identity, user_id, required=h.type not in ("hello", "ping"))
            if is_transfer(h):
                reply = self._transfer(identity, h, frames, who)
            elif h.type == "submit":
                task = lambda: self._submit_task(identity, decode(frames, self.codec_limits), who)  # noqa: E731
                self._offload(identity, rid, nbytes, task)
                return True
            elif nbytes > SMALL_ARRAYS_BYTES:
                raise ProtocolError(f"a {h.type!r:.40} message carries no arrays of {nbytes} bytes")
            else:
                reply = self.dispatch(identity, decode(frames, self.codec_limits), who)
        except Exception as e:  # keep answering whatever happens
            reply = error_reply(e)
        if reply is not None:
            self._answer(identity, rid, reply)
        return True

    def _answer(self, identity: bytes, rid: str | None, reply: object) -> None:
        after = None
        if isinstance(reply, tuple):
            reply, after = reply
        if isinstance(reply, BaseException):
            reply = error_reply(reply)
        if reply is not None:
            assert isinstance(reply, Message)
            self._send(identity, reply, rid)
        if after is not None:
            after()

    def _flush_done(self) -> None:
        while True:
            try:
                identity, rid, nbytes, out = self._done.get_nowait()
            except queue.Empty:
                return
            self._inflight -= nbytes
            self._answer(identity, rid, out)

    # ------------------------------------------------------------------------------------------ events
    def _flush_events(self) -> None:
        while True:
            try:
                msg = self._events.get_nowait()
            except queue.Empty:
                return
            job_id = getattr(msg, "job_id", None)
            for ident in list(self._watchers.get(job_id, ())):
                # a slow client misses previews (small events always go); it catches up with status/watch
                self._send(ident, msg, None, event=True)

    def _heartbeat(self) -> None:
        idents = set().union(*self._watchers.values()) if self._watchers else set()
        beat = Heartbeat(time.time(), self.name)
        for ident in idents:
            if not self._send(ident, beat, None, event=True):
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


__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_STATE_DIR",
    "EngineServer",
    "LimitError",
    "ServerConfig",
    "Unauthorized",
    "serve",
]
