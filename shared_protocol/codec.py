"""Multipart wire codec: one JSON header frame, then raw array frames.

    frame 0      UTF-8 JSON object {"proto": "splatbrush", "v": 1, "type": "...", "rid": str | null,
                 "body": {...}, "arrays": [{"name", "dtype", "shape", "frames"}, ...]}
    frames 1..   the raw little-endian bytes of each array in header order, C order; an array larger than
                 `FRAME_BYTES` (8 MiB) is split into consecutive frames of at most that size

No pickle and no eval anywhere: dtypes come from a fixed allow-list, shapes are checked against the frame
sizes, and every limit (`CodecLimits`) is enforced before any big allocation. `recv_message` reads a message
frame by frame straight into its arrays, so an oversized or lying message cannot exhaust memory.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import MessageTooLarge, ProtocolError

PROTO_NAME = "splatbrush"
FRAME_BYTES = 8 * 1024 * 1024
"""Arrays are split into frames of this size when sent (one chunk of protocol 2: an engine takes no bigger
frame; issue 4 measured 16 MiB frames at ~2.6 GB/s vs 0.9 GB/s for tiny ones)."""
V1_FRAME_BYTES = 16 * 1024 * 1024
"""What protocol-1 peers split at: the largest frame a client accepts from an older engine."""

# dtype strings (numpy `dtype.str`) accepted on the wire; everything is little-endian or byte-sized
ALLOWED_DTYPES = {"|u1", "|i1", "|b1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8"}


@dataclass(frozen=True)
class CodecLimits:
    max_message_bytes: int = 1536 * 1024 * 1024
    """Total bytes of all frames of one message (1.5 GiB: ~6M Gaussians at SH degree 3)."""
    max_header_bytes: int = 1024 * 1024
    """Size of the JSON header frame."""
    max_frames: int = 1024
    """Frames in one message (header included)."""
    max_arrays: int = 128
    """Arrays declared by one header."""
    max_ndim: int = 4
    frame_bytes: int = V1_FRAME_BYTES
    """The largest array frame a well-behaved peer sends (an engine sets its chunk size)."""

    @property
    def max_frame_bytes(self) -> int:
        """Largest single frame a well-behaved peer sends (for ZMQ_MAXMSGSIZE), with slack."""
        return max(self.frame_bytes, self.max_header_bytes) + 1024


DEFAULT_LIMITS = CodecLimits()


@dataclass
class Decoded:
    """A decoded message before its body is validated into a typed message."""

    type: str
    version: int
    rid: str | None
    body: dict[str, Any]
    arrays: dict[str, np.ndarray]


def _wire_array(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    if a.dtype.str not in ALLOWED_DTYPES:
        raise ProtocolError(f"array {name!r} has dtype {a.dtype}, which the protocol does not carry")
    return np.ascontiguousarray(a)


def encode(
    msg_type: str,
    body: dict[str, Any],
    arrays: dict[str, np.ndarray] | None = None,
    rid: str | None = None,
    version: int = 1,
    frame_bytes: int = FRAME_BYTES,
) -> list[bytes | memoryview]:
    """Frames for one message. Array frames are memoryviews of the arrays (zero copy; send with copy=False
    for big ones, and keep the arrays alive until sent)."""
    specs: list[dict[str, Any]] = []
    payload: list[bytes | memoryview] = []
    for name, a in (arrays or {}).items():
        a = _wire_array(name, a)
        raw = memoryview(a).cast("B") if a.nbytes else memoryview(b"")
        chunks = [raw[i : i + frame_bytes] for i in range(0, a.nbytes, frame_bytes)] or [raw]
        specs.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape), "frames": len(chunks)})
        payload.extend(chunks)
    header = {"proto": PROTO_NAME, "v": version, "type": msg_type, "rid": rid, "body": body, "arrays": specs}
    try:
        head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise ProtocolError(f"message {msg_type!r} has a field JSON cannot carry: {e}") from None
    return [head, *payload]


def _buffer(frame: Any) -> memoryview:
    buf = getattr(frame, "buffer", frame)  # zmq.Frame -> memoryview; bytes/memoryview as they are
    return memoryview(buf).cast("B") if not isinstance(buf, memoryview) or buf.format != "B" else buf


def _check_spec(spec: Any, limits: CodecLimits) -> tuple[str, np.dtype, tuple[int, ...], int]:
    if not isinstance(spec, dict) or set(spec) != {"name", "dtype", "shape", "frames"}:
        raise ProtocolError("header 'arrays' entries must be objects with exactly name, dtype, shape, frames")
    name, dtype, shape, frames = spec["name"], spec["dtype"], spec["shape"], spec["frames"]
    if not isinstance(name, str) or not 0 < len(name) <= 128:
        raise ProtocolError(f"array name {name!r} must be a string of 1..128 characters")
    if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES:
        raise ProtocolError(
            f"array {name!r}: dtype {dtype!r} is not allowed (one of {sorted(ALLOWED_DTYPES)})"
        )
    if not isinstance(shape, list) or len(shape) > limits.max_ndim:
        raise ProtocolError(f"array {name!r}: shape must be a list of at most {limits.max_ndim} sizes")
    if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**40 for s in shape):
        raise ProtocolError(f"array {name!r}: shape {shape!r} must hold non-negative integers")
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
        raise ProtocolError(f"array {name!r}: frame count {frames!r} must be a positive integer")
    if frames > limits.max_frames:
        raise MessageTooLarge(f"array {name!r} declares {frames} frames, the limit is {limits.max_frames}")
    return name, np.dtype(dtype), tuple(shape), frames


@dataclass
class ArraySpec:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    frames: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass
class Header:
    type: str
    version: int
    rid: str | None
    body: dict[str, Any]
    specs: list[ArraySpec]


_RID_RE = re.compile(rb'"rid"\s*:\s*"([^"\\]{1,64})"')


def sniff_rid(raw: Any) -> str | None:
    """The request id of a header frame that is refused before it is parsed (too big, not JSON): looked up
    in its first 64 KiB, so that the error reply still reaches the waiting request."""
    m = _RID_RE.search(bytes(_buffer(raw)[:65536]))
    if m is None:
        return None
    try:
        return m.group(1).decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse_header(raw: Any, limits: CodecLimits = DEFAULT_LIMITS) -> Header:
    """Check the JSON header frame, including the declared array sizes against the limits (before anything
    is allocated for them). Any ProtocolError raised carries `.rid`: the request id when one was readable."""
    try:
        return _parse_header(raw, limits)
    except ProtocolError as e:
        if getattr(e, "rid", None) is None:
            e.rid = sniff_rid(raw)  # type: ignore[attr-defined]
        raise


def _parse_header(raw: Any, limits: CodecLimits) -> Header:
    raw = _buffer(raw)
    if raw.nbytes > limits.max_header_bytes:
        raise MessageTooLarge(f"header frame is {raw.nbytes} bytes, the limit is {limits.max_header_bytes}")
    try:
        header = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProtocolError(f"header frame is not UTF-8 JSON: {type(e).__name__}: {e}"[:300]) from None
    if not isinstance(header, dict):
        raise ProtocolError("header must be a JSON object")
    expected = {"proto", "v", "type", "rid", "body", "arrays"}
    if set(header) != expected:
        raise ProtocolError(f"header keys {sorted(header)} != {sorted(expected)}")
    if header["proto"] != PROTO_NAME:
        raise ProtocolError(f"header proto is {header['proto']!r:.40}, expected {PROTO_NAME!r}")
    v, mtype, rid, body, specs = (header[k] for k in ("v", "type", "rid", "body", "arrays"))
    if not isinstance(v, int) or isinstance(v, bool) or not 0 < v < 1000:
        raise ProtocolError(f"header v (protocol version) {v!r:.40} must be a positive integer")
    if not isinstance(mtype, str) or not 0 < len(mtype) <= 32:
        raise ProtocolError(f"header type {mtype!r:.40} must be a short string")
    if rid is not None and (not isinstance(rid, str) or not 0 < len(rid) <= 64):
        raise ProtocolError("header rid must be null or a string of 1..64 characters")
    rid = rid if isinstance(rid, str) else None
    if not isinstance(body, dict):
        raise ProtocolError("header body must be a JSON object")
    if not isinstance(specs, list) or len(specs) > limits.max_arrays:
        raise ProtocolError(f"header arrays must be a list of at most {limits.max_arrays} entries")
    checked = [ArraySpec(*_check_spec(spec, limits)) for spec in specs]
    names = [a.name for a in checked]
    if len(set(names)) != len(names):
        raise ProtocolError(f"an array name is declared twice in {names}")
    declared = raw.nbytes + sum(a.nbytes for a in checked)
    if declared > limits.max_message_bytes:
        raise MessageTooLarge(f"message declares {declared} bytes, the limit is {limits.max_message_bytes}")
    if 1 + sum(a.frames for a in checked) > limits.max_frames:
        raise MessageTooLarge(f"message declares more than {limits.max_frames} frames")
    return Header(mtype, v, rid, body, checked)


def decode(frames: list[Any], limits: CodecLimits = DEFAULT_LIMITS) -> Decoded:
    """Parse and check a list of frames (header first). Raises ProtocolError / MessageTooLarge."""
    if not frames:
        raise ProtocolError("empty message (no header frame)")
    if len(frames) > limits.max_frames:
        raise MessageTooLarge(f"message has {len(frames)} frames, the limit is {limits.max_frames}")
    bufs = [_buffer(f) for f in frames]
    total = sum(b.nbytes for b in bufs)
    if total > limits.max_message_bytes:
        raise MessageTooLarge(f"message is {total} bytes, the limit is {limits.max_message_bytes}")
    h = parse_header(bufs[0], limits)
    arrays: dict[str, np.ndarray] = {}
    pos = 1
    for a in h.specs:
        if pos + a.frames > len(bufs):
            raise ProtocolError(f"array {a.name!r} declares {a.frames} frame(s) but the message is truncated")
        parts = bufs[pos : pos + a.frames]
        got = sum(p.nbytes for p in parts)
        if got != a.nbytes:
            raise ProtocolError(
                f"array {a.name!r} {a.dtype.str}{list(a.shape)} needs {a.nbytes} bytes, frames hold {got}"
            )
        out = np.empty(a.shape, a.dtype)
        if a.nbytes:
            flat = memoryview(out.reshape(-1)).cast("B")
            off = 0
            for p in parts:
                flat[off : off + p.nbytes] = p
                off += p.nbytes
        arrays[a.name] = out
        pos += a.frames
    if pos != len(bufs):
        raise ProtocolError(f"message has {len(bufs) - pos} frame(s) beyond those the header declares")
    return Decoded(type=h.type, version=h.version, rid=h.rid, body=h.body, arrays=arrays)


def _drain(sock: Any) -> None:
    import zmq

    while sock.getsockopt(zmq.RCVMORE):
        sock.recv(copy=False)


def _recv_into(sock: Any, buf: memoryview) -> int:
    """Receive one frame into `buf`; returns the frame's full size (larger than buf means it did not fit)."""
    if hasattr(sock, "recv_into"):  # pyzmq >= 26
        return sock.recv_into(buf)
    frame = _buffer(sock.recv(copy=False))
    if frame.nbytes <= buf.nbytes:
        buf[: frame.nbytes] = frame
    return frame.nbytes


def recv_message(
    sock: Any, limits: CodecLimits = DEFAULT_LIMITS, flags: int = 0, skip: int = 0
) -> tuple[list[bytes], Decoded]:
    """Receive and decode one message from a zmq socket, streaming array frames straight into their arrays
    (`recv_into`: no intermediate copy, nothing allocated beyond what the validated header declares).

    `skip` leading frames (a ROUTER's identity) are returned as the first element. On any problem the rest of
    the message is drained and a ProtocolError raised with `.prefix` (those frames) and `.rid` (when the
    header was readable), so that a server can still address its error reply."""
    import zmq

    prefix: list[bytes] = []
    for i in range(skip):
        prefix.append(sock.recv(flags if i == 0 else 0))
        if not sock.getsockopt(zmq.RCVMORE):
            err = ProtocolError("message has no header frame")
            err.prefix, err.rid = prefix, None  # type: ignore[attr-defined]
            raise err
    rid = None
    try:
        head = sock.recv(flags if skip == 0 else 0, copy=False)
        try:
            h = parse_header(head, limits)
        except ProtocolError as e:
            rid = getattr(e, "rid", None)
            raise
        rid = h.rid
        arrays: dict[str, np.ndarray] = {}
        for a in h.specs:
            out = np.empty(a.shape, a.dtype)
            flat = memoryview(out.reshape(-1)).cast("B") if a.nbytes else memoryview(bytearray(0))
            off = 0
            for k in range(a.frames):
                if not sock.getsockopt(zmq.RCVMORE):
                    raise ProtocolError(
                        f"array {a.name!r} declares {a.frames} frame(s) but the message is "
                        f"truncated after {k}"
                    )
                n = _recv_into(sock, flat[off:]) if off < a.nbytes else len(sock.recv(copy=False))
                if n > a.nbytes - off:
                    raise ProtocolError(
                        f"array {a.name!r} {a.dtype.str}{list(a.shape)} needs {a.nbytes} "
                        "bytes, its frames hold more"
                    )
                off += n
            if off != a.nbytes:
                raise ProtocolError(
                    f"array {a.name!r} {a.dtype.str}{list(a.shape)} needs {a.nbytes} bytes, frames hold {off}"
                )
            arrays[a.name] = out
        if sock.getsockopt(zmq.RCVMORE):
            raise ProtocolError("message has frame(s) beyond those the header declares")
    except ProtocolError as e:
        _drain(sock)
        e.prefix, e.rid = prefix, rid  # type: ignore[attr-defined]
        raise
    return prefix, Decoded(type=h.type, version=h.version, rid=h.rid, body=h.body, arrays=arrays)
