"""Chunked uploads (protocol 2): a submit's arrays arrive as chunks of at most `chunk_bytes`, each written
to `<state_dir>/uploads/<upload id>.upload` (0600) by an IO thread as it arrives; the submit that commits
the upload reads them back from there.

Bounds: an upload is at most `max_bytes`; one owner has at most `max_per_client` open (a new one replaces
the owner's oldest idle for IDLE_REPLACE_S); one upload has at
most `max_pending` chunks received but not yet written (more are answered `busy`); an upload with no chunk
or commit for `timeout_s` is deleted, and so is every upload left by a previous run. The table is used by
the server loop only; IO threads touch nothing but an upload's file descriptor.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import BusyError, LimitError

log = logging.getLogger(__name__)
IDLE_REPLACE_S = 30.0
"""A client at its cap of open uploads that begins another gets it in place of its oldest upload idle this
long (a failed upload it will never finish), instead of `busy` until that one expires."""


class UploadTooLarge(LimitError):
    code = "too_large"


@dataclass
class Upload:
    id: str
    owner: str
    path: Path
    nbytes: int
    fd: int
    received: int = 0
    """Bytes accepted, in order (the next chunk's offset)."""
    written: int = 0
    pending: int = 0
    """Chunks accepted whose write has not finished."""
    error: str | None = None
    touched: float = field(default_factory=time.monotonic)

    @property
    def complete(self) -> bool:
        return self.received == self.nbytes and self.written == self.nbytes and not self.pending


class Uploads:
    def __init__(
        self,
        folder: Path,
        chunk_bytes: int,
        max_bytes: int,
        max_per_client: int = 2,
        timeout_s: float = 300.0,
        max_pending: int = 2,
    ):
        self.folder = Path(folder)
        self.chunk_bytes = chunk_bytes
        self.max_bytes = max_bytes
        self.max_per_client = max_per_client
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self._open: dict[str, Upload] = {}
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        for p in self.folder.iterdir():  # uploads of a previous run can never be committed
            log.info("removing %s (an upload a previous engine run left unfinished)", p)
            p.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self._open)

    def begin(self, owner: str, nbytes: int) -> Upload:
        if nbytes > self.max_bytes:
            raise UploadTooLarge(
                f"an upload of {nbytes} bytes is over this engine's max_upload_bytes of {self.max_bytes}"
            )
        mine = [u for u in self._open.values() if u.owner == owner]
        idle = [u for u in mine if time.monotonic() - u.touched > IDLE_REPLACE_S and not u.pending]
        if len(mine) >= self.max_per_client and idle:  # e.g. a client that retried after a failed upload
            oldest = min(idle, key=lambda u: u.touched)
            log.info(
                "upload %s replaced by a new one of its client (idle, %d bytes)", oldest.id, oldest.received
            )
            self.discard(oldest)
            mine.remove(oldest)
        if len(mine) >= self.max_per_client:
            raise BusyError(
                f"this client already has {len(mine)} uploads open (the limit is {self.max_per_client}); "
                "finish or let them expire first"
            )
        uid = secrets.token_hex(8)
        path = self.folder / f"{uid}.upload"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        up = Upload(uid, owner, path, nbytes, fd)
        self._open[uid] = up
        return up

    def get(self, owner: str, upload_id: str) -> Upload:
        up = self._open.get(upload_id)
        if up is None or up.owner != owner:
            raise KeyError(f"no upload {upload_id} on this engine (it expired, or was committed already)")
        return up

    def accept(self, owner: str, upload_id: str, offset: int, n: int) -> Upload:
        """Account a chunk of `n` bytes at `offset` (before its write is handed to an IO thread)."""
        up = self.get(owner, upload_id)
        if up.error:
            raise ValueError(f"upload {upload_id} failed: {up.error}")
        if offset != up.received:
            raise ValueError(f"upload {upload_id}: chunk at offset {offset}, expected {up.received}")
        if not 0 < n <= self.chunk_bytes:
            raise UploadTooLarge(f"a chunk of {n} bytes; chunks are 1..{self.chunk_bytes} bytes")
        if up.received + n > up.nbytes:
            raise ValueError(f"upload {upload_id}: {up.received + n} bytes, more than the {up.nbytes} begun")
        if up.pending >= self.max_pending:
            raise BusyError(f"upload {upload_id} has {up.pending} chunks still being written")
        up.received += n
        up.pending += 1
        up.touched = time.monotonic()
        return up

    def written(self, up: Upload, n: int, error: BaseException | None) -> None:
        """A chunk's write finished (in the loop, after the IO thread)."""
        up.pending -= 1
        up.touched = time.monotonic()
        if error is not None:
            up.error = up.error or f"{type(error).__name__}: {error}"
        else:
            up.written += n
        if up.id not in self._open and not up.pending:
            self._close(up)  # expired or discarded while this write was running

    def take(self, owner: str, upload_id: str) -> Upload:
        """A complete upload, out of the table (its file stays until `discard`)."""
        up = self.get(owner, upload_id)
        if up.error:
            raise ValueError(f"upload {upload_id} failed: {up.error}")
        if not up.complete:
            raise ValueError(f"upload {upload_id} holds {up.written} of its {up.nbytes} bytes; send the rest")
        del self._open[upload_id]
        os.close(up.fd)
        up.fd = -1
        return up

    def discard(self, up: Upload) -> None:
        self._open.pop(up.id, None)
        if not up.pending:
            self._close(up)

    def _close(self, up: Upload) -> None:
        if up.fd >= 0:
            os.close(up.fd)
            up.fd = -1
        up.path.unlink(missing_ok=True)

    def expire(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        old = [u for u in self._open.values() if now - u.touched > self.timeout_s]
        for u in old:
            log.info("upload %s expired (%d of %d bytes), deleted", u.id, u.received, u.nbytes)
            self.discard(u)
        return [u.id for u in old]


def write_chunk(up: Upload, offset: int, frames: list) -> int:
    """In an IO thread: write a chunk's frames at `offset` of the upload's file; returns the bytes written."""
    views = [memoryview(getattr(f, "buffer", f)).cast("B") for f in frames]
    if not hasattr(os, "pwrite"):  # Windows: a handle of its own, so that two writes never share a seek
        with open(up.path, "r+b") as fh:
            fh.seek(offset)
            return sum(fh.write(v) for v in views)
    n = 0
    for view in views:
        while view.nbytes:
            k = os.pwrite(up.fd, view, offset + n)
            n += k
            view = view[k:]
    return n
