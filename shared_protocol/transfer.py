"""Chunked transfers (protocol version 2): big payloads travel as many small messages, so that no message
an engine accepts is bigger than one chunk plus its header (and the engine can set ZMQ_MAXMSGSIZE to that).

    upload_begin {nbytes}                    -> upload {upload_id, chunk_bytes, expires_s}
    upload_chunk {upload_id, offset} + data  -> uploaded {upload_id, received}     (data: |u1 [<= chunk])
    submit {..., upload_id, upload_arrays}   -> job        (the uploaded bytes are the submit's arrays)
    result_begin {job_id}                    -> result_info {job_id, nbytes, arrays, report}
    result_chunk {job_id, offset, nbytes}    -> result_part {job_id, offset} + data

Chunks go in order (each `offset` is the bytes received so far); `upload_arrays` / `result_info.arrays`
lay the arrays out back to back, C order, in list order: [{"name", "dtype", "shape"}]. The client side of
both directions is `upload()` and `download()` here (used by EngineClient).
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from . import fields as F
from .codec import _check_spec, _wire_array
from .errors import ProtocolError, RemoteError
from .msgbase import Message, only_arrays

CHUNK_BYTES = 8 * 1024 * 1024
"""The most payload bytes one chunk carries (an engine may announce less in `upload.chunk_bytes`)."""
MAX_TRANSFER_BYTES = 1 << 40
UPLOAD_ID_RE = re.compile(r"[0-9a-f]{16}")
BUSY_RETRY_S = 0.05


def upload_id(where: str, value: Any) -> str:
    if not isinstance(value, str) or not UPLOAD_ID_RE.fullmatch(value):
        raise ProtocolError(f"{where} must be an upload id (16 lowercase hex digits), got {value!r:.40}")
    return value


def layout_of(arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """The wire layout of `arrays` (name, dtype, shape; back to back in this order)."""
    out = []
    for name, a in arrays.items():
        a = _wire_array(name, a)
        out.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape)})
    return out


def check_layout(where: str, layout: Any, max_arrays: int = 128) -> list[tuple[str, np.dtype, tuple, int]]:
    """[(name, dtype, shape, nbytes)] of a checked layout (the codec's rules for array specs)."""
    if not isinstance(layout, list) or not 0 < len(layout) <= max_arrays:
        raise ProtocolError(f"{where} must be a list of 1..{max_arrays} arrays")
    out, names = [], set()
    for i, spec in enumerate(layout):
        if not isinstance(spec, dict) or set(spec) != {"name", "dtype", "shape"}:
            raise ProtocolError(f"{where}[{i}] must be an object with exactly name, dtype, shape")
        name, dtype, shape, _ = _check_spec({**spec, "frames": 1}, _SPEC_LIMITS)
        if name in names:
            raise ProtocolError(f"{where}: array {name!r} is listed twice")
        names.add(name)
        out.append((name, dtype, shape, math.prod(shape) * dtype.itemsize))
    return out


class _SpecLimits:
    max_ndim = 4
    max_frames = 1


_SPEC_LIMITS = _SpecLimits()


def layout_bytes(layout: list[tuple[str, np.dtype, tuple, int]]) -> int:
    return sum(n for *_, n in layout)


def arrays_from_file(
    path: str, layout: list[tuple[str, np.dtype, tuple, int]], mmap: bool = False
) -> dict[str, np.ndarray]:
    """Back to back arrays of a file whose size must be exactly the layout's: read into memory, or with
    `mmap` mapped read-only (pages come from the file as they are used, not held in the process)."""
    size = os.path.getsize(path)
    if size != layout_bytes(layout):
        raise ProtocolError(f"the upload holds {size} bytes, its arrays {layout_bytes(layout)}")
    out, pos = {}, 0
    with open(path, "rb") as f:
        for name, dtype, shape, nbytes in layout:
            if mmap and nbytes:
                out[name] = np.memmap(path, dtype=dtype, mode="r", offset=pos, shape=shape)
            else:
                f.seek(pos)
                out[name] = np.fromfile(f, dtype=dtype, count=nbytes // dtype.itemsize).reshape(shape)
            pos += nbytes
    return out


# ----------------------------------------------------------------------------------------------- messages
@dataclass
class UploadBegin(Message):
    TYPE: ClassVar[str] = "upload_begin"
    MIN_VERSION: ClassVar[int] = 2
    nbytes: int

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys(cls.TYPE, body, {"nbytes"})
        only_arrays(cls.TYPE, arrays, set())
        return cls(F.req_int("upload_begin.nbytes", body["nbytes"], 1, MAX_TRANSFER_BYTES))


@dataclass
class UploadReady(Message):
    TYPE: ClassVar[str] = "upload"
    MIN_VERSION: ClassVar[int] = 2
    upload_id: str
    chunk_bytes: int
    expires_s: float

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys(cls.TYPE, body, {"upload_id", "chunk_bytes", "expires_s"})
        return cls(
            upload_id("upload.upload_id", body["upload_id"]),
            F.req_int("upload.chunk_bytes", body["chunk_bytes"], 1, 1 << 31),
            F.req_float("upload.expires_s", body["expires_s"]),
        )


def _data(where: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
    only_arrays(where, arrays, {"data"})
    d = arrays.get("data")
    if d is None or d.dtype != np.uint8 or d.ndim != 1 or d.size == 0:
        raise ProtocolError(f"{where}: needs one non-empty 1-D |u1 array 'data'")
    return d


@dataclass
class UploadChunk(Message):
    TYPE: ClassVar[str] = "upload_chunk"
    MIN_VERSION: ClassVar[int] = 2
    upload_id: str
    offset: int
    data: np.ndarray  # uint8 [n]

    def to_wire(self):
        return {"upload_id": self.upload_id, "offset": self.offset}, {"data": self.data}

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys(cls.TYPE, body, {"upload_id", "offset"})
        return cls(
            upload_id("upload_chunk.upload_id", body["upload_id"]),
            F.req_int("upload_chunk.offset", body["offset"], 0, MAX_TRANSFER_BYTES),
            _data(cls.TYPE, arrays),
        )


@dataclass
class Uploaded(Message):
    TYPE: ClassVar[str] = "uploaded"
    MIN_VERSION: ClassVar[int] = 2
    upload_id: str
    received: int

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys(cls.TYPE, body, {"upload_id", "received"})
        return cls(
            upload_id("uploaded.upload_id", body["upload_id"]),
            F.req_int("uploaded.received", body["received"], 0, MAX_TRANSFER_BYTES),
        )


@dataclass
class ResultBegin(Message):
    TYPE: ClassVar[str] = "result_begin"
    MIN_VERSION: ClassVar[int] = 2
    job_id: str

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys(cls.TYPE, body, {"job_id"})
        only_arrays(cls.TYPE, arrays, set())
        return cls(F.job_id("result_begin.job_id", body["job_id"]))


@dataclass
class ResultInfo(Message):
    TYPE: ClassVar[str] = "result_info"
    MIN_VERSION: ClassVar[int] = 2
    job_id: str
    nbytes: int
    arrays: list[dict[str, Any]]
    report: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys(cls.TYPE, body, {"job_id", "nbytes", "arrays"}, {"report"})
        info = cls(
            F.job_id("result_info.job_id", body["job_id"]),
            F.req_int("result_info.nbytes", body["nbytes"], 0, MAX_TRANSFER_BYTES),
            body["arrays"],
            F.json_dict("result_info.report", body.get("report", {})),
        )
        if layout_bytes(check_layout("result_info.arrays", info.arrays)) != info.nbytes:
            raise ProtocolError("result_info.nbytes is not the size of its arrays")
        return info


@dataclass
class ResultChunk(Message):
    TYPE: ClassVar[str] = "result_chunk"
    MIN_VERSION: ClassVar[int] = 2
    job_id: str
    offset: int
    nbytes: int

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys(cls.TYPE, body, {"job_id", "offset", "nbytes"})
        only_arrays(cls.TYPE, arrays, set())
        return cls(
            F.job_id("result_chunk.job_id", body["job_id"]),
            F.req_int("result_chunk.offset", body["offset"], 0, MAX_TRANSFER_BYTES),
            F.req_int("result_chunk.nbytes", body["nbytes"], 1, 1 << 31),
        )


@dataclass
class ResultPart(Message):
    TYPE: ClassVar[str] = "result_part"
    MIN_VERSION: ClassVar[int] = 2
    job_id: str
    offset: int
    data: np.ndarray

    def to_wire(self):
        return {"job_id": self.job_id, "offset": self.offset}, {"data": self.data}

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys(cls.TYPE, body, {"job_id", "offset"})
        return cls(
            F.job_id("result_part.job_id", body["job_id"]),
            F.req_int("result_part.offset", body["offset"], 0, MAX_TRANSFER_BYTES),
            _data(cls.TYPE, arrays),
        )


@dataclass
class SubmitUpload(Message):
    """What a client sends to commit an upload: a `submit` whose arrays are the upload's (send-only: the
    engine reads it as a `submit` with `upload_id` and `upload_arrays` in its body)."""

    TYPE: ClassVar[str] = "submit"
    MIN_VERSION: ClassVar[int] = 2
    body: dict[str, Any]

    def to_wire(self):
        return dict(self.body), {}


TRANSFER_REQUESTS: tuple[type[Message], ...] = (UploadBegin, UploadChunk, ResultBegin, ResultChunk)
TRANSFER_REPLIES: tuple[type[Message], ...] = (UploadReady, Uploaded, ResultInfo, ResultPart)
UPLOAD_FIELDS = ("upload_id", "upload_arrays")


def submit_upload_fields(body: dict[str, Any]) -> tuple[str, list[tuple[str, np.dtype, tuple, int]]]:
    """(upload id, checked layout) of a submit body that refers to an upload."""
    return (
        upload_id("submit.upload_id", body.get("upload_id")),
        check_layout("submit.upload_arrays", body.get("upload_arrays")),
    )


# ----------------------------------------------------------------------------------------------- client side
def _parts(arrays: dict[str, np.ndarray], chunk: int):
    """Zero-copy byte slices of the arrays, back to back, each at most `chunk` bytes."""
    for name, a in arrays.items():
        a = _wire_array(name, a)
        raw = memoryview(a).cast("B") if a.nbytes else None
        for i in range(0, a.nbytes, chunk):
            yield np.frombuffer(raw[i : i + chunk], np.uint8)


def _patient(client: Any, msg: Message, timeout: float) -> Message:
    """A request retried while the engine answers `busy` (it holds too many chunks right now)."""
    end = time.monotonic() + timeout
    while True:
        try:
            return client._request(msg, timeout=timeout)
        except RemoteError as e:
            if e.code != "busy" or time.monotonic() > end:
                raise
            time.sleep(BUSY_RETRY_S)


def upload(client: Any, arrays: dict[str, np.ndarray], rate: float) -> tuple[str, list[dict[str, Any]]]:
    """Send `arrays` to the engine in chunks; returns (upload id, layout) for `SubmitUpload`."""
    layout = layout_of(arrays)
    total = sum(_wire_array(n, a).nbytes for n, a in arrays.items())
    ready = client._request(UploadBegin(total))
    if not isinstance(ready, UploadReady):
        raise ProtocolError(f"engine answered upload_begin with {ready.TYPE!r}")
    chunk = min(ready.chunk_bytes, CHUNK_BYTES)
    timeout = client.timeout + chunk / rate
    offset = 0
    for part in _parts(arrays, chunk):
        reply = _patient(client, UploadChunk(ready.upload_id, offset, part), timeout)
        offset += part.nbytes
        if not isinstance(reply, Uploaded) or reply.received != offset:
            raise ProtocolError(f"engine acknowledged {getattr(reply, 'received', '?')} of {offset} bytes")
    return ready.upload_id, layout


def chunked_submit(client: Any, body: dict[str, Any], arrays: dict[str, np.ndarray], rate: float):
    """A callable `attempt(timeout) -> reply` for EngineClient.submit: the first attempt uploads the arrays
    and commits them; a retry (after a timeout) first commits the same upload again (the engine answers the
    job it already made, by idempotency key) and uploads anew only when the engine no longer has it."""
    state: dict[str, Any] = {}

    def attempt(timeout: float) -> Message:
        if "upload" in state:
            try:
                return client._request(SubmitUpload({**body, **state["upload"]}), timeout=timeout)
            except RemoteError as e:
                if e.code not in ("not_found", "invalid"):
                    raise
        uid, layout = upload(client, arrays, rate)
        state["upload"] = {"upload_id": uid, "upload_arrays": layout}
        return client._request(SubmitUpload({**body, **state["upload"]}), timeout=timeout)

    return attempt


def download(client: Any, job_id: str, rate: float) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A done job's result arrays (and report), fetched chunk by chunk."""
    info = client._request(ResultBegin(job_id))
    if not isinstance(info, ResultInfo):
        raise ProtocolError(f"engine answered result_begin with {info.TYPE!r}")
    buf = np.empty(info.nbytes, np.uint8)
    limits = client.welcome.limits if getattr(client, "welcome", None) else {}
    announced = limits.get("chunk_bytes")
    chunk = min(CHUNK_BYTES, announced) if isinstance(announced, int) and announced > 0 else CHUNK_BYTES
    timeout = client.timeout + chunk / rate
    offset = 0
    while offset < info.nbytes:
        n = min(chunk, info.nbytes - offset)
        part = _patient(client, ResultChunk(job_id, offset, n), timeout)
        if not isinstance(part, ResultPart) or part.offset != offset or part.data.nbytes != n:
            raise ProtocolError(f"engine sent the wrong part of job {job_id}'s result at offset {offset}")
        buf[offset : offset + n] = part.data
        offset += n
    out, pos = {}, 0
    for name, dtype, shape, nbytes in check_layout("result_info.arrays", info.arrays):
        out[name] = buf[pos : pos + nbytes].view(dtype).reshape(shape)
        pos += nbytes
    return out, info.report


__all__ = ["CHUNK_BYTES", "download", "upload"]
