"""Typed messages of protocol version 1. Each message is a dataclass with `TYPE` (its wire name),
`to_wire() -> (body, arrays)` and `from_wire(body, arrays)`, which validates every field and raises
ProtocolError naming the bad one. Unknown fields are refused (a new field means a new protocol version).

Requests (client -> engine) and the reply each gets:
    hello      -> welcome      version negotiation: the client lists the versions it speaks
    ping       -> pong         liveness and job counts (no payload either way)
    submit     -> job          a new job (Gaussians, style image, cameras, settings); `watch` subscribes
    status     -> job          one job's JobInfo
    watch      -> job          subscribe to a job's progress/preview events (reconnect: watch again)
    unwatch    -> ok
    cancel     -> job          effective within one optimizer step
    result     -> result_data  the stylized Gaussians + report of a `done` job
    list_jobs  -> jobs
    clean      -> cleaned      delete finished jobs (all, or the given ids) from the engine's state dir
    shutdown   -> ok           the engine checkpoints the running job and exits
Any request may instead get `error` {code, message}.
Events (engine -> watching clients, rid null): progress, preview, heartbeat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from . import fields as F
from .admin import Adopt
from .codec import DEFAULT_LIMITS, CodecLimits, Decoded, decode, encode
from .errors import ProtocolError, UnknownMessageType, VersionMismatch
from .events import ProgressEvent
from .msgbase import Message, only_arrays
from .payloads import JobInfo, JobSettings, splat_from_arrays, splat_to_arrays
from .splatfile.arrays import SplatArrays
from .transfer import TRANSFER_REPLIES, TRANSFER_REQUESTS

PROTOCOL_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
"""2: chunked transfers (shared_protocol.transfer); 1: every payload in one message."""
MAX_CAMERAS = 4096
MIN_STYLE_SIDE = 8
"""The stylizer needs at least 8x8 style pixels; smaller is refused at submit."""


_only_arrays = only_arrays


# ----------------------------------------------------------------------------------------------- messages
@dataclass
class _JobRef(Message):
    job_id: str

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys(cls.TYPE, body, {"job_id"})
        _only_arrays(cls.TYPE, arrays, set())
        return cls(job_id=F.job_id(f"{cls.TYPE}.job_id", body["job_id"]))


@dataclass
class _Empty(Message):
    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys(cls.TYPE, body, set())
        _only_arrays(cls.TYPE, arrays, set())
        return cls()


@dataclass
class Hello(Message):
    TYPE: ClassVar[str] = "hello"
    versions: list[int] = field(default_factory=lambda: list(SUPPORTED_VERSIONS))
    client: str = ""
    token: str = ""
    """The client's per-user token (loopback engines file its jobs under it); empty: anonymous."""

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys("hello", body, {"versions"}, {"client", "token"})
        _only_arrays("hello", arrays, set())
        vs = body["versions"]
        if not isinstance(vs, list) or not 0 < len(vs) <= 32:
            raise ProtocolError("hello.versions must be a non-empty list of protocol versions")
        token = F.req_str("hello.token", body.get("token", ""), 32)
        if token and not F.TOKEN_RE.fullmatch(token):
            raise ProtocolError("hello.token must be 32 lowercase hex digits")
        return cls(
            [F.req_int("hello.versions[]", v, 1, 999) for v in vs],
            F.req_str("hello.client", body.get("client", ""), 128),
            token,
        )


@dataclass
class Welcome(Message):
    TYPE: ClassVar[str] = "welcome"
    version: int
    server: str
    limits: dict[str, Any] = field(default_factory=dict)
    devices: list[str] = field(default_factory=list)

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys("welcome", body, {"version", "server"}, {"limits", "devices"})
        devs = body.get("devices", [])
        if not isinstance(devs, list) or len(devs) > 64:
            raise ProtocolError("welcome.devices must be a list of device names")
        return cls(
            F.req_int("welcome.version", body["version"], 1, 999),
            F.req_str("welcome.server", body["server"], 128),
            F.json_dict("welcome.limits", body.get("limits", {})),
            [F.req_str("welcome.devices[]", d, 32) for d in devs],
        )


@dataclass
class Ping(_Empty):
    """Liveness. Carries nothing: a ping never makes the engine hold or send back a payload (issue 11)."""

    TYPE: ClassVar[str] = "ping"


@dataclass
class Pong(Message):
    TYPE: ClassVar[str] = "pong"
    server: str
    time: float
    jobs: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys("pong", body, {"server", "time"}, {"jobs"})
        _only_arrays("pong", arrays, set())
        jobs = body.get("jobs", {})
        if not isinstance(jobs, dict):
            raise ProtocolError("pong.jobs must be an object of state: count")
        return cls(
            F.req_str("pong.server", body["server"], 128),
            F.req_float("pong.time", body["time"]),
            {
                F.job_state("pong.jobs key", k): F.req_int(f"pong.jobs[{k}]", v, 0, 10**9)
                for k, v in jobs.items()
            },
        )


@dataclass
class Submit(Message):
    TYPE: ClassVar[str] = "submit"
    gaussians: SplatArrays
    style_image: np.ndarray  # [H, W, 3] uint8
    cameras: list[dict[str, Any]] | None = None
    settings: JobSettings = field(default_factory=JobSettings)
    name: str = ""
    watch: bool = True
    """Subscribe the submitting client to the job's events (no race with a separate watch)."""
    idempotency_key: str | None = None
    """Client-generated (8..64 of [A-Za-z0-9_-]): a submit retried with the same key returns the same job."""

    def to_wire(self):
        body = {
            "cameras": self.cameras,
            "settings": self.settings.to_dict(),
            "name": self.name,
            "watch": self.watch,
        }
        if self.idempotency_key is not None:
            body["idempotency_key"] = self.idempotency_key
        arrays = splat_to_arrays(self.gaussians)
        arrays["style"] = np.asarray(self.style_image)
        return body, arrays

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys("submit", body, {"settings"}, {"cameras", "name", "watch", "idempotency_key"})
        cams = body.get("cameras")
        if cams is not None:
            if not isinstance(cams, list) or not 0 < len(cams) <= MAX_CAMERAS:
                raise ProtocolError(f"submit.cameras must be null or a list of 1..{MAX_CAMERAS} cameras")
            cams = [F.camera_dict(f"submit.cameras[{i}]", c) for i, c in enumerate(cams)]
        if "style" not in arrays:
            raise ProtocolError("submit: the style image array 'style' is missing")
        _only_arrays("submit", arrays, {"style"} | {k for k in arrays if k.startswith("g.")})
        return cls(
            gaussians=splat_from_arrays(arrays, "submit"),
            style_image=F.image_array("submit.style", arrays["style"], min_side=MIN_STYLE_SIDE),
            cameras=cams,
            settings=JobSettings.from_dict(body["settings"], "submit.settings"),
            name=F.req_str("submit.name", body.get("name", ""), 256),
            watch=F.req_bool("submit.watch", body.get("watch", True)),
            idempotency_key=F.opt_str("submit.idempotency_key", body.get("idempotency_key"), 64, F.KEY_RE),
        )


@dataclass
class Status(_JobRef):
    TYPE: ClassVar[str] = "status"


@dataclass
class Watch(_JobRef):
    TYPE: ClassVar[str] = "watch"


@dataclass
class Unwatch(_JobRef):
    TYPE: ClassVar[str] = "unwatch"


@dataclass
class Cancel(_JobRef):
    TYPE: ClassVar[str] = "cancel"


@dataclass
class Result(_JobRef):
    TYPE: ClassVar[str] = "result"


@dataclass
class ListJobs(_Empty):
    TYPE: ClassVar[str] = "list_jobs"


@dataclass
class Shutdown(_Empty):
    TYPE: ClassVar[str] = "shutdown"


@dataclass
class Clean(Message):
    TYPE: ClassVar[str] = "clean"
    job_ids: list[str] | None = None
    """None: every finished (done/failed/cancelled) job."""

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys("clean", body, set(), {"job_ids"})
        _only_arrays("clean", arrays, set())
        ids = body.get("job_ids")
        if ids is not None:
            if not isinstance(ids, list) or len(ids) > 100_000:
                raise ProtocolError("clean.job_ids must be null or a list of job ids")
            ids = [F.job_id("clean.job_ids[]", j) for j in ids]
        return cls(ids)


@dataclass
class JobReply(Message):
    TYPE: ClassVar[str] = "job"
    job: JobInfo

    def to_wire(self):
        return {"job": self.job.to_dict()}, {}

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys("job", body, {"job"})
        return cls(JobInfo.from_dict(body["job"]))


@dataclass
class JobList(Message):
    TYPE: ClassVar[str] = "jobs"
    jobs: list[JobInfo]

    def to_wire(self):
        return {"jobs": [j.to_dict() for j in self.jobs]}, {}

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys("jobs", body, {"jobs"})
        if not isinstance(body["jobs"], list):
            raise ProtocolError("jobs.jobs must be a list")
        return cls([JobInfo.from_dict(j, "jobs[]") for j in body["jobs"]])


@dataclass
class ResultData(Message):
    TYPE: ClassVar[str] = "result_data"
    job_id: str
    gaussians: SplatArrays
    report: dict[str, Any] = field(default_factory=dict)

    def to_wire(self):
        return {"job_id": self.job_id, "report": self.report}, splat_to_arrays(self.gaussians)

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys("result_data", body, {"job_id"}, {"report"})
        return cls(
            F.job_id("result_data.job_id", body["job_id"]),
            splat_from_arrays(arrays, "result_data"),
            F.json_dict("result_data.report", body.get("report", {})),
        )


@dataclass
class Cleaned(Message):
    TYPE: ClassVar[str] = "cleaned"
    removed: list[str]

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys("cleaned", body, {"removed"})
        if not isinstance(body["removed"], list):
            raise ProtocolError("cleaned.removed must be a list of job ids")
        return cls([F.job_id("cleaned.removed[]", j) for j in body["removed"]])


@dataclass
class Ok(Message):
    TYPE: ClassVar[str] = "ok"
    message: str = ""

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys("ok", body, set(), {"message"})
        return cls(F.req_str("ok.message", body.get("message", ""), 1024))


@dataclass
class Error(Message):
    TYPE: ClassVar[str] = "error"
    code: str
    message: str

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys("error", body, {"code", "message"})
        return cls(
            F.req_str("error.code", body["code"], 64), F.req_str("error.message", body["message"], 8192)
        )


@dataclass
class Progress(Message):
    """The wire form of a `shared_protocol.events.ProgressEvent` (its preview travels as `preview`)."""

    TYPE: ClassVar[str] = "progress"
    job_id: str
    state: str
    step: int = 0
    total_steps: int = 0
    phase: str = ""
    losses: dict[str, float] = field(default_factory=dict)
    message: str = ""
    elapsed_s: float = 0.0

    @classmethod
    def from_event(cls, ev: ProgressEvent) -> Progress:
        ev = ev.wire_safe()
        return cls(
            ev.job_id, ev.state, ev.step, ev.total_steps, ev.phase, ev.losses, ev.message, ev.elapsed_s
        )

    def to_event(self) -> ProgressEvent:
        return ProgressEvent(
            self.step,
            self.total_steps,
            self.phase,
            dict(self.losses),
            None,
            self.elapsed_s,
            job_id=self.job_id,
            state=self.state,
            message=self.message,
        )

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys(
            "progress",
            body,
            {"job_id", "state"},
            {"step", "total_steps", "phase", "losses", "message", "elapsed_s"},
        )
        _only_arrays("progress", arrays, set())
        return cls(
            F.job_id("progress.job_id", body["job_id"]),
            F.job_state("progress.state", body["state"]),
            F.req_int("progress.step", body.get("step", 0), 0, 10**9),
            F.req_int("progress.total_steps", body.get("total_steps", 0), 0, 10**9),
            F.req_str("progress.phase", body.get("phase", ""), 64),
            F.float_dict("progress.losses", body.get("losses", {})),
            F.req_str("progress.message", body.get("message", ""), 4096),
            F.req_float("progress.elapsed_s", body.get("elapsed_s", 0.0)),
        )


@dataclass
class Preview(Message):
    TYPE: ClassVar[str] = "preview"
    job_id: str
    step: int
    image: np.ndarray  # [H, W, 3] uint8

    def to_wire(self):
        return {"job_id": self.job_id, "step": self.step}, {"image": self.image}

    def to_event(self) -> ProgressEvent:
        return ProgressEvent(self.step, 0, "", {}, self.image, job_id=self.job_id, state="running")

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys("preview", body, {"job_id", "step"})
        _only_arrays("preview", arrays, {"image"})
        return cls(
            F.job_id("preview.job_id", body["job_id"]),
            F.req_int("preview.step", body["step"], 0, 10**9),
            F.image_array("preview.image", arrays.get("image")),
        )


@dataclass
class Heartbeat(Message):
    TYPE: ClassVar[str] = "heartbeat"
    time: float
    server: str = ""

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys("heartbeat", body, {"time"}, {"server"})
        return cls(
            F.req_float("heartbeat.time", body["time"]),
            F.req_str("heartbeat.server", body.get("server", ""), 128),
        )


REQUESTS: tuple[type[Message], ...] = (
    Hello,
    Ping,
    Submit,
    Status,
    Watch,
    Unwatch,
    Cancel,
    Result,
    ListJobs,
    Clean,
    Shutdown,
    Adopt,
    *TRANSFER_REQUESTS,
)
REPLIES: tuple[type[Message], ...] = (
    *(Welcome, Pong, JobReply, JobList, ResultData, Cleaned, Ok, Error),
    *TRANSFER_REPLIES,
)
EVENTS: tuple[type[Message], ...] = (Progress, Preview, Heartbeat)
MESSAGE_TYPES: dict[str, type[Message]] = {c.TYPE: c for c in (*REQUESTS, *REPLIES, *EVENTS)}


# ----------------------------------------------------------------------------------------------- envelope
def encode_message(msg: Message, rid: str | None = None, version: int = PROTOCOL_VERSION) -> list[Any]:
    body, arrays = msg.to_wire()
    return encode(msg.TYPE, body, arrays, rid=rid, version=version)


def decode_message(frames: list[Any], limits: CodecLimits = DEFAULT_LIMITS) -> tuple[Message, str | None]:
    """(message, rid) from a list of frames. Raises ProtocolError subclasses naming the problem."""
    return message_from(decode(frames, limits))


def message_from(d: Decoded) -> tuple[Message, str | None]:
    """(message, rid) from a decoded envelope (see codec.recv_message): checks version, type and fields."""
    if d.version not in SUPPORTED_VERSIONS and d.type != "hello":
        raise VersionMismatch(
            f"protocol version {d.version} is not supported (this side speaks {list(SUPPORTED_VERSIONS)})"
        )
    cls = MESSAGE_TYPES.get(d.type)
    if cls is None:
        raise UnknownMessageType(f"unknown message type {d.type!r:.40} (known: {sorted(MESSAGE_TYPES)})")
    if d.version < cls.MIN_VERSION:
        raise VersionMismatch(
            f"{d.type!r} needs protocol version {cls.MIN_VERSION}, the header says {d.version}"
        )
    return cls.from_wire(d.body, d.arrays), d.rid


def negotiate(client_versions: list[int]) -> int:
    """The highest version both sides speak, or VersionMismatch."""
    common = set(client_versions) & set(SUPPORTED_VERSIONS)
    if not common:
        theirs, ours = sorted(client_versions), list(SUPPORTED_VERSIONS)
        raise VersionMismatch(f"no common protocol version: client speaks {theirs}, engine {ours}")
    return max(common)
