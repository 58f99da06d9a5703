"""The chunked transfers of protocol 2 (shared_protocol.transfer), mixed into EngineServer: uploads whose
chunks are written to disk by IO threads as they arrive, the submit that commits one, and results read in
chunks. Each message the loop takes is at most one chunk plus its header; every chunk being written or read
counts against the engine's in-flight bytes (`busy` beyond)."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from shared_protocol import fields as F
from shared_protocol.codec import Decoded, Header, decode
from shared_protocol.errors import ProtocolError, VersionMismatch
from shared_protocol.messages import JobReply, Message, message_from
from shared_protocol.transfer import (
    UPLOAD_FIELDS,
    ResultBegin,
    ResultChunk,
    ResultInfo,
    ResultPart,
    UploadBegin,
    Uploaded,
    UploadReady,
    arrays_from_file,
    layout_bytes,
    submit_upload_fields,
    upload_id,
)

from .access import Principal
from .config import BusyError
from .handlers import error_reply
from .store import DISK_FULL_ERRNOS, DiskFullError, InProgressError
from .uploads import UploadTooLarge, write_chunk

if TYPE_CHECKING:
    from .server import EngineServer

log = logging.getLogger(__name__)
TRANSFER_TYPES = ("upload_begin", "upload_chunk", "result_begin", "result_chunk")
Reply = Message | tuple[Message, Callable[[], None]] | None


def is_transfer(h: Header) -> bool:
    return h.type in TRANSFER_TYPES or (h.type == "submit" and "upload_id" in h.body)


class TransferHandlers:
    def _transfer(self: EngineServer, identity: bytes, h: Header, frames: list, who: Principal) -> Reply:
        """Answer a transfer message (None: an IO thread answers it)."""
        if h.version < 2:
            raise VersionMismatch(f"{h.type!r} needs protocol version 2, the header says {h.version}")
        if h.type == "upload_chunk":
            return self._upload_chunk(identity, h, frames, who)
        if h.type == "submit":
            return self._commit_upload(identity, h, who)
        msg, _ = message_from(decode(frames, self.codec_limits))
        if isinstance(msg, UploadBegin):
            up = self.uploads.begin(who.owner, msg.nbytes)
            return UploadReady(up.id, self.uploads.chunk_bytes, self.uploads.timeout_s)
        assert isinstance(msg, (ResultBegin, ResultChunk))
        info = self._job(msg.job_id, who)
        if info.state != "done":
            raise ValueError(f"job {info.id} is {info.state}; results exist only for done jobs")
        if isinstance(msg, ResultBegin):
            self._offload(identity, h.rid, 0, lambda: self._result_info(info.id))
            return None
        if msg.nbytes > self.uploads.chunk_bytes:
            raise UploadTooLarge(f"a result chunk of {msg.nbytes} bytes; at most {self.uploads.chunk_bytes}")
        self._offload(identity, h.rid, msg.nbytes, lambda: self._result_part(info.id, msg.offset, msg.nbytes))
        return None

    # -------------------------------------------------------------------------------------- uploads
    def _upload_chunk(self: EngineServer, identity: bytes, h: Header, frames: list, who: Principal) -> None:
        F.check_keys("upload_chunk", h.body, {"upload_id", "offset"})
        uid = upload_id("upload_chunk.upload_id", h.body["upload_id"])
        offset = F.req_int("upload_chunk.offset", h.body["offset"], 0, 1 << 40)
        specs = h.specs
        one = len(specs) == 1 and specs[0].name == "data"
        if not one or specs[0].dtype != np.uint8 or len(specs[0].shape) != 1:
            raise ProtocolError("upload_chunk carries exactly one 1-D |u1 array 'data'")
        n = specs[0].nbytes
        got = sum(memoryview(getattr(f, "buffer", f)).nbytes for f in frames[1:])
        if len(frames) != 1 + specs[0].frames or got != n:
            raise ProtocolError(
                f"upload_chunk declares {n} bytes in {specs[0].frames} frame(s), it holds {got}"
            )
        up = self.uploads.accept(who.owner, uid, offset, n)

        def task() -> tuple[Message, Callable[[], None]]:
            err: BaseException | None = None
            try:
                write_chunk(up, offset, frames[1:])
                reply: Message = Uploaded(up.id, offset + n)
            except BaseException as e:
                err = e
                reply = error_reply(_disk_full(self, e, n) if _is_disk_full(e) else e)
            return reply, lambda: self.uploads.written(up, n, err)

        try:
            self._offload(identity, h.rid, n, task)
        except BusyError:
            up.received -= n
            up.pending -= 1
            raise
        return None

    def _commit_upload(self: EngineServer, identity: bytes, h: Header, who: Principal) -> Reply:
        """A submit whose arrays are an upload: a retry of a submit already stored returns its job; else the
        upload is read back and submitted like a one-message submit, in an IO thread."""
        uid, layout = submit_upload_fields(h.body)
        if h.specs:
            raise ProtocolError("a submit that commits an upload carries no arrays of its own")
        body = {k: v for k, v in h.body.items() if k not in UPLOAD_FIELDS}
        key = F.opt_str("submit.idempotency_key", body.get("idempotency_key"), 64, F.KEY_RE)
        existing = self.store.find(who.owner, key)
        if existing is not None:
            try:
                self.uploads.discard(self.uploads.get(who.owner, uid))
            except KeyError:
                pass

            def after() -> None:
                if body.get("watch", True) is True:
                    self._watchers.setdefault(existing.id, set()).add(identity)

            return JobReply(existing), after
        if self.store.storing(who.owner, key):  # the first commit of this retried submit is still stored
            raise InProgressError(
                "a submit with this idempotency key is still being stored; retry in a moment"
            )
        up = self.uploads.take(who.owner, uid)
        if layout_bytes(layout) != up.nbytes:
            self.uploads.discard(up)
            raise ProtocolError(
                f"submit.upload_arrays hold {layout_bytes(layout)} bytes, the upload {up.nbytes}"
            )

        def task() -> Any:
            try:  # mapped, not read: the scene is not held in memory a second time while it is stored
                arrays = arrays_from_file(str(up.path), layout, mmap=os.name == "posix")
                return self._submit_task(identity, Decoded("submit", h.version, h.rid, body, arrays), who)
            finally:
                up.path.unlink(missing_ok=True)  # POSIX: mapped pages stay readable until released

        # not counted in flight: the bytes are on disk, and at most io_threads commits are read at once
        self._offload(identity, h.rid, 0, task)
        return None

    # -------------------------------------------------------------------------------------- results
    def _result_info(self: EngineServer, job_id: str) -> ResultInfo:
        _, layout, nbytes, report = self.store.flat_output(job_id)
        return ResultInfo(job_id, nbytes, layout, report)

    def _result_part(self: EngineServer, job_id: str, offset: int, n: int) -> ResultPart:
        path, _, nbytes, _ = self.store.flat_output(job_id)
        if offset + n > nbytes:
            raise ValueError(f"job {job_id}'s result is {nbytes} bytes; asked for {n} at offset {offset}")
        data = np.empty(n, np.uint8)
        with open(path, "rb") as f:
            f.seek(offset)
            if f.readinto(memoryview(data)) != n:
                raise OSError(f"job {job_id}'s result file is shorter than {offset + n} bytes")
        return ResultPart(job_id, offset, data)


def _is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS


def _disk_full(server: EngineServer, e: BaseException, n: int) -> DiskFullError:
    strerror = getattr(e, "strerror", None) or errno.errorcode.get(getattr(e, "errno", 0), "")
    return DiskFullError(
        f"the engine's state dir {server.store.root} is full ({strerror}) while writing a {n / 1e6:.0f} MB "
        "upload chunk; free disk space or remove finished jobs (`splatbrush jobs clean`)"
    )
