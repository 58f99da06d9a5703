"""`ZmtpGuard`: a TCP front that bounds a whole message before libzmq buffers it (loopback engines).

libzmq holds a multipart message's frames in its pipe until the last one arrives (the pipe's HWM counts
whole messages, ZMQ_MAXMSGSIZE one frame), so a peer that never sends the last frame makes the engine hold
every frame it sends, and the application never sees any of it (docs/server.md, tests/test_server_transfer
.py). The guard sits in between: it accepts the clients' TCP connections on the engine's address, reads the
ZMTP 3 stream each client sends (NULL mechanism: frame flags and sizes are in the clear), and forwards it to
the engine's ROUTER on a private ipc socket (in a 0700 folder, so it cannot be bypassed by other users). The
moment a frame header would take a message over `max_frames` frames or `max_message_bytes` bytes, or a frame
over `max_frame_bytes`, the message is ended there (an empty last frame is forwarded instead of that frame,
so the engine still answers `too_large` with the request id from the header) and the rest of it is read and
dropped: libzmq holds at most one message's bound per connection. All connections together may have
`budget_bytes` of unfinished messages: a frame that would pass it waits (the guard stops reading that client:
TCP pushes back) until others finish, and a message not finished `message_timeout_s` after its first frame
closes its connection, so that clients that never finish cannot hold the budget. What the engine sends back
is forwarded untouched.

CURVE engines do not use it: their frames are encrypted (the MORE flag is inside the box), and only
authorized keys get past the handshake there.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)
IN_BUF = 256 << 10
"""Per connection, client -> engine (touched pages count in the engine's RSS: 200 clients, 50 MiB)."""
OUT_BUF = 64 << 10
"""Per connection, engine -> client."""
GREETING = 64


class Violation(Exception):
    """The client's stream broke a bound or is not ZMTP 3 with the NULL mechanism."""


class Budget:
    """Bytes of unfinished messages all connections may hold in the engine's libzmq together."""

    def __init__(self, total: int):
        self.total = total
        self.used = 0
        self._cv = threading.Condition()

    def take(self, n: int, until: float) -> bool:
        with self._cv:
            while self.used + n > self.total:
                left = until - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 1.0))
            self.used += n
            return True

    def give(self, n: int) -> None:
        if n:
            with self._cv:
                self.used -= n
                self._cv.notify_all()


class StreamCheck:
    """Follows one client's ZMTP stream. `feed(data)` returns what to forward to the engine for it: the
    client's bytes, except for a message that breaks a bound: that one is ended early (a final empty frame,
    so the engine gets its header and answers `too_large` with its request id) and the rest of it dropped.
    Raises Violation for a stream that is not ZMTP 3 / NULL, or no budget in time (then the connection is
    closed)."""

    def __init__(
        self,
        max_message_bytes: int,
        max_frames: int,
        max_frame_bytes: int,
        budget: Budget | None = None,
        message_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_message_bytes = max_message_bytes
        self.max_frames = max_frames
        self.max_frame_bytes = max_frame_bytes
        self.budget = budget or Budget(1 << 62)
        self.message_timeout_s = message_timeout_s
        self.clock = clock
        self.cut = 0
        """Messages ended early for breaking a bound."""
        self.started: float | None = None
        """When the unfinished message's first frame came (None: between messages)."""
        self._head = b""  # the greeting, or a frame header until complete (headers go whole)
        self._greeted = False
        self._skip = 0  # body bytes of the current frame still to come
        self._drop = False  # ... and whether they are dropped
        self._last = False  # the current frame ends its message
        self._frames = 0  # frames of the current message forwarded so far, and their bytes
        self._bytes = 0
        self._dropping = False  # the rest of the current message is dropped

    def feed(self, data: memoryview) -> list:
        out: list = []
        pos, n = 0, len(data)
        while pos < n:
            if self._skip:
                k = min(self._skip, n - pos)
                if not self._drop:
                    out.append(data[pos : pos + k])
                self._skip -= k
                pos += k
                if not self._skip:
                    self._end_of_frame()
                continue
            if not self._greeted:  # forwarded as it comes (the peers exchange it in steps), checked whole
                k = min(GREETING - len(self._head), n - pos)
                self._head += bytes(data[pos : pos + k])
                out.append(data[pos : pos + k])
                pos += k
                if len(self._head) == GREETING:
                    self._greeting(self._head)
                    self._head, self._greeted = b"", True
                continue
            self._head += bytes(data[pos : pos + 1])
            pos += 1
            flags = self._head[0]
            need = 9 if flags & 0x02 else 2
            if len(self._head) < need:
                continue
            size = struct.unpack(">Q", self._head[1:9])[0] if flags & 0x02 else self._head[1]
            head, self._head = self._head, b""
            out.extend(self._frame(flags, size, head))
            self._skip = size
            if not size:
                self._end_of_frame()
        return out

    def _greeting(self, g: bytes) -> None:
        if g[0] != 0xFF or not g[9] & 0x01:
            raise Violation("not a ZMTP greeting")
        if g[10] < 3:
            raise Violation(f"ZMTP {g[10]}.{g[11]}: this engine speaks ZMTP 3")
        mechanism = g[12:32].rstrip(b"\0")
        if mechanism != b"NULL":
            raise Violation(f"security mechanism {mechanism[:20]!r}; this engine takes NULL")

    def _frame(self, flags: int, size: int, head: bytes) -> list:
        """What to forward for a frame header (the body follows it, or is dropped with it)."""
        if flags & ~0x07:
            raise Violation(f"frame flags {flags:#x}")
        self._last = not flags & 0x01 and not flags & 0x04
        if flags & 0x04:  # a command (READY, PING, ...): not part of a message
            if size > 1 << 16:
                raise Violation(f"a {size}-byte command")
            self._drop = False
            return [head]
        if self._dropping:
            self._drop = True
            return []
        over = (
            size > self.max_frame_bytes
            or self._frames + 1 > self.max_frames
            or self._bytes + size > self.max_message_bytes
        )
        if over:
            self.cut += 1
            log.info(
                "guard: cutting a message short at frame %d (%d bytes so far)", self._frames, self._bytes
            )
            self._dropping = self._drop = True
            ended = [b"\x00\x00"] if self._frames else []  # end what the engine has (its header): answered
            self.budget.give(self._bytes)  # that message is complete in the engine now
            self._frames = self._bytes = 0
            return ended
        if self.started is None:
            self.started = self.clock()
        if not self.budget.take(size, self.started + self.message_timeout_s):
            raise Violation(f"no room for a {size}-byte frame within {self.message_timeout_s:g} s")
        self._frames += 1
        self._bytes += size
        self._drop = False
        return [head]

    def _end_of_frame(self) -> None:
        if self._last:
            self.finish()

    def finish(self) -> None:
        """The message is all forwarded, or dropped, or the connection closed: its bytes leave the budget."""
        self.budget.give(self._bytes)
        self._frames = self._bytes = 0
        self._dropping, self.started = False, None

    def overdue(self) -> bool:
        return self.started is not None and self.clock() - self.started > self.message_timeout_s


class ZmtpGuard:
    def __init__(
        self,
        listen: tuple[str, int],
        backend: str,
        max_message_bytes: int,
        max_frames: int,
        max_frame_bytes: int,
        budget_bytes: int | None = None,
        message_timeout_s: float = 60.0,
    ):
        """`listen`: (host, port; 0 picks one); `backend`: the path of the engine's ipc socket;
        `budget_bytes`: unfinished messages of all clients together (default 4 messages)."""
        family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        self._srv = socket.socket(family, socket.SOCK_STREAM)
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(listen)
        self._srv.listen(128)
        self.port = self._srv.getsockname()[1]
        self.backend = backend
        self.limits = (max_message_bytes, max_frames, max_frame_bytes)
        self.budget = Budget(budget_bytes or 4 * max_message_bytes)
        self.message_timeout_s = message_timeout_s
        self.refused = 0
        """Connections closed (not ZMTP 3 / NULL, no budget in time, a message unfinished too long)."""
        self.cut = 0
        """Messages ended early and dropped for breaking a bound."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="splatbrush-guard", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            self._srv.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._srv.close()
        if self._thread.is_alive():
            self._thread.join(5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._srv.accept()
            except OSError:
                return
            try:
                engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                engine.connect(self.backend)
            except OSError as e:
                log.warning("guard: cannot reach the engine at %s: %s", self.backend, e)
                client.close()
                continue
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = _Pair(client, engine)
            threading.Thread(target=self._inbound, args=(pair,), daemon=True).start()
            threading.Thread(target=_pump, args=(engine, client, pair), daemon=True).start()

    def _inbound(self, pair: _Pair) -> None:
        check = StreamCheck(*self.limits, self.budget, self.message_timeout_s)
        buf = bytearray(IN_BUF)
        view = memoryview(buf)
        ready = select.poll()  # not a socket timeout: that would also stop the other thread's sends
        ready.register(pair.client.fileno(), select.POLLIN)
        wait_ms = int(min(5.0, self.message_timeout_s) * 1000)
        try:
            while True:
                readable = ready.poll(wait_ms)
                if check.overdue():
                    raise Violation(f"a message unfinished after {self.message_timeout_s:g} s")
                if not readable:
                    continue
                n = pair.client.recv_into(view)
                if not n:
                    break
                before = check.cut
                out = check.feed(view[:n])
                self.cut += check.cut - before
                _send(pair.engine, out)
        except Violation as e:
            self.refused += 1
            log.warning("guard: closing a client connection: %s", e)
        except OSError:
            pass
        check.finish()
        pair.close()


def _send(sock: socket.socket, out: list) -> None:
    small = sum(len(x) for x in out) < 1 << 16
    if small and len(out) > 1:
        out = [b"".join(out)]
    for x in out:
        sock.sendall(x)


class _Pair:
    def __init__(self, client: socket.socket, engine: socket.socket):
        self.client, self.engine = client, engine
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for s in (self.client, self.engine):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def _pump(src: socket.socket, dst: socket.socket, pair: _Pair) -> None:
    buf = bytearray(OUT_BUF)
    view = memoryview(buf)
    try:
        while True:
            n = src.recv_into(view)
            if not n:
                break
            dst.sendall(view[:n])
    except OSError:
        pass
    pair.close()
