"""Sending to clients with bounded memory. ZeroMQ queues what a client does not read (SNDHWM counts
messages, not bytes), so every frame of 4 KiB or more is sent zero-copy with a tracker, and the bytes zmq
still holds for each client are counted:

  - while a client has `per_client_bytes` unsent, its events (progress, preview) are dropped and big replies
    refused with `busy`; a client with nothing pending always gets its reply, however big (one result);
  - all clients together hold at most `total_bytes` (big replies refused with `busy` beyond it).
Small messages (< 4 KiB: pongs, job replies, heartbeats) are bounded by SNDHWM instead.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import zmq

log = logging.getLogger(__name__)
TRACK_BYTES = 4096


@dataclass
class _Pending:
    tracker: zmq.MessageTracker
    nbytes: int


class Outbox:
    def __init__(self, sock: zmq.Socket, per_client_bytes: int, total_bytes: int):
        self.sock = sock
        self.per_client_bytes = per_client_bytes
        self.total_bytes = total_bytes
        self._pending: dict[bytes, deque[_Pending]] = {}
        self._total = 0

    def pending(self, identity: bytes) -> int:
        """Bytes zmq still holds for this client (and forget what it sent)."""
        q = self._pending.get(identity)
        if not q:
            return 0
        left = deque()
        for p in q:
            if p.tracker.done:
                self._total -= p.nbytes
            else:
                left.append(p)
        if left:
            self._pending[identity] = left
        else:
            del self._pending[identity]
        return sum(p.nbytes for p in left)

    @property
    def total(self) -> int:
        for ident in list(self._pending):
            self.pending(ident)
        return self._total

    def room_for(self, identity: bytes, nbytes: int) -> str | None:
        """None when a message of `nbytes` may go to this client now, else why not."""
        if nbytes < TRACK_BYTES:
            return None
        mine = self.pending(identity)
        if mine and mine + nbytes > self.per_client_bytes:
            return f"{mine / 2**20:.0f} MiB of earlier replies to this client are still unread"
        total = self.total
        if total and total + nbytes > self.total_bytes:
            return f"the engine already holds {total / 2**20:.0f} MiB of unread replies to its clients"
        return None

    def send(self, identity: bytes, frames: list) -> None:
        """Send one message (raises zmq.ZMQError like socket.send: EHOSTUNREACH, EAGAIN)."""
        self.sock.send(identity, zmq.SNDMORE | zmq.NOBLOCK)
        tracked = []
        for i, f in enumerate(frames):
            flags = zmq.SNDMORE if i < len(frames) - 1 else 0
            n = len(f) if not isinstance(f, memoryview) else f.nbytes
            if n >= TRACK_BYTES:
                frame = zmq.Frame(f, track=True)
                self.sock.send(frame, flags | zmq.NOBLOCK, copy=False)
                tracked.append(_Pending(frame.tracker, n))
            else:
                self.sock.send(f, flags | zmq.NOBLOCK)
        if tracked:
            q = self._pending.setdefault(identity, deque())
            q.extend(tracked)
            self._total += sum(p.nbytes for p in tracked)

    def forget(self, identity: bytes) -> None:
        for p in self._pending.pop(identity, ()):
            self._total -= p.nbytes
