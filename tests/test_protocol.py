"""Wire protocol: every message type round-trips, the codec splits/joins frames and refuses bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from shared_protocol import fields as F
from shared_protocol import messages as M
from shared_protocol import transfer as T
from shared_protocol.admin import Adopt
from shared_protocol.codec import CodecLimits, decode, encode, recv_message
from shared_protocol.errors import MessageTooLarge, ProtocolError, UnknownMessageType, VersionMismatch
from shared_protocol.events import ProgressEvent
from shared_protocol.splatfile import GAUSSIAN_FIELDS, SplatArrays


def make_arrays(n: int = 50, k: int = 4, seed: int = 0) -> SplatArrays:
    r = np.random.default_rng(seed)
    return SplatArrays(
        means=r.normal(size=(n, 3)).astype(np.float32),
        quats=r.normal(size=(n, 4)).astype(np.float32),
        log_scales=r.normal(size=(n, 3)).astype(np.float32) - 3,
        opacity_logits=r.normal(size=n).astype(np.float32),
        sh=r.normal(size=(n, k, 3)).astype(np.float32),
        extra={"nx": r.normal(size=n).astype(np.float32)},
    )


def splat_equal(a: SplatArrays, b: SplatArrays) -> bool:
    same = all(np.array_equal(getattr(a, f), getattr(b, f)) for f in GAUSSIAN_FIELDS)
    return (
        same
        and a.extra.keys() == b.extra.keys()
        and all(np.array_equal(a.extra[k], b.extra[k]) for k in a.extra)
    )


CAM = {
    "name": "c0",
    "world_to_camera": np.eye(4).tolist(),
    "fx": 50.0,
    "fy": 50.0,
    "cx": 16.0,
    "cy": 12.0,
    "width": 32,
    "height": 24,
}
INFO = M.JobInfo(
    id="0123456789ab",
    state="running",
    step=3,
    total_steps=10,
    phase="optimize",
    name="x",
    created=1.5,
    started=2.5,
    settings=M.JobSettings(preset="fast", steps=10).to_dict(),
    losses={"style": 0.5},
)
IMG = np.random.default_rng(1).integers(0, 255, (12, 16, 3), dtype=np.uint8)

EXAMPLES: list[M.Message] = [
    M.Hello([1, 2], "test"),
    M.Welcome(1, "engine", {"max_gaussians": 10}, ["cpu"]),
    M.Ping(),
    M.Pong("engine", 3.0, {"queued": 1}),
    M.Submit(make_arrays(), IMG, [CAM], M.JobSettings("fast", 5, 64, 4, 7, "cpu"), "name", True),
    M.Submit(make_arrays(k=1), IMG, None, M.JobSettings(), "", False),
    M.Status("0123456789ab"),
    M.Watch("0123456789ab"),
    M.Unwatch("0123456789ab"),
    M.Cancel("0123456789ab"),
    M.Result("0123456789ab"),
    M.ListJobs(),
    M.Clean(None),
    M.Clean(["0123456789ab"]),
    M.Shutdown(),
    M.JobReply(INFO),
    M.JobList([INFO, M.JobInfo(id="ffffffffffff", state="done", settings=M.JobSettings().to_dict())]),
    M.ResultData("0123456789ab", make_arrays(seed=3), {"time_s": 1.0, "nested": {"a": [1, 2]}}),
    M.Cleaned(["0123456789ab"]),
    M.Ok("bye"),
    M.Error("not_found", "no job"),
    M.Progress("0123456789ab", "running", 4, 10, "optimize", {"style": 0.25}, "hi", 1.5),
    M.Preview("0123456789ab", 4, IMG),
    M.Heartbeat(12.0, "engine"),
    Adopt(None, None),
    Adopt(["0123456789ab"], "user:" + "0" * 24),
    T.UploadBegin(1000),
    T.UploadReady("0123456789abcdef", 8 << 20, 300.0),
    T.UploadChunk("0123456789abcdef", 16, np.arange(10, dtype=np.uint8)),
    T.Uploaded("0123456789abcdef", 26),
    T.ResultBegin("0123456789ab"),
    T.ResultInfo("0123456789ab", 24, [{"name": "g.x", "dtype": "<f4", "shape": [2, 3]}], {"a": 1}),
    T.ResultChunk("0123456789ab", 0, 24),
    T.ResultPart("0123456789ab", 0, np.ones(24, np.uint8)),
]


def assert_same(a, b):
    assert type(a) is type(b)
    for k in [f.name for f in dataclasses.fields(a)]:
        x, y = getattr(a, k), getattr(b, k)
        if isinstance(x, SplatArrays):
            assert splat_equal(x, y), k
        elif isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), k
        elif isinstance(x, dict) and any(isinstance(v, np.ndarray) for v in x.values()):
            assert x.keys() == y.keys() and all(np.array_equal(x[i], y[i]) for i in x), k
        elif k == "cameras" and x is not None:
            assert [dict(c) for c in x] == y
        else:
            assert x == y, k


def test_every_message_type_round_trips():
    covered = {type(m).TYPE for m in EXAMPLES}
    assert covered == set(M.MESSAGE_TYPES), set(M.MESSAGE_TYPES) - covered
    for msg in EXAMPLES:
        frames = M.encode_message(msg, rid="r1", version=max(M.SUPPORTED_VERSIONS))
        back, rid = M.decode_message([bytes(f) for f in frames])
        assert rid == "r1"
        assert_same(msg, back)


def test_big_arrays_split_into_frames_and_rejoin():
    a = np.random.default_rng(0).normal(size=(1000, 7)).astype(np.float32)  # 28000 bytes
    frames = encode("ping", {}, {"echo.a": a, "echo.b": np.zeros(0, np.float32)}, frame_bytes=4096)
    header = json.loads(bytes(frames[0]))
    assert header["arrays"][0]["frames"] == 7 and len(frames) == 1 + 7 + 1
    assert all(len(f) <= 4096 for f in frames[1:])
    d = decode([bytes(f) for f in frames])
    assert np.array_equal(d.arrays["echo.a"], a) and d.arrays["echo.b"].shape == (0,)
    assert d.arrays["echo.a"].flags.writeable


def _frames(msg=None):
    return [bytes(f) for f in M.encode_message(msg or M.Preview("0123456789ab", 1, IMG), rid="x")]


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda f: f[:1], "truncated"),
        (lambda f: f + [b"junk"], "beyond"),
        (lambda f: [b"\xff\xfe"] + f[1:], "UTF-8 JSON"),
        (lambda f: [b"[1,2]"] + f[1:], "JSON object"),
        (lambda f: [], "empty"),
        (lambda f: [f[0]] + [f[1][:-1]], "needs"),
        (lambda f: [f[0].replace(b'"|u1"', b'"|O"')] + f[1:], "not allowed"),
        (lambda f: [f[0].replace(b'"step":1', b'"step":"1"')] + f[1:], "preview.step"),
        (lambda f: [f[0].replace(b'"0123456789ab"', b'"../../etc"')] + f[1:], "not a job id"),
        (lambda f: [f[0].replace(b'"step":1', b'"step":1,"evil":2')] + f[1:], "unknown field"),
        (lambda f: [f[0].replace(b'"splatbrush"', b'"other"')] + f[1:], "proto"),
    ],
)
def test_codec_refuses_malformed_messages(mutate, match):
    with pytest.raises(ProtocolError, match=match):
        M.decode_message(mutate(_frames()))


def test_unknown_type_and_version():
    f = _frames(M.Ok("x"))
    with pytest.raises(UnknownMessageType):
        M.decode_message([f[0].replace(b'"ok"', b'"rm_rf"')])
    with pytest.raises(VersionMismatch):
        M.decode_message([f[0].replace(b'"v":2', b'"v":7')])
    assert M.negotiate([1, 5]) == 1 and M.negotiate([1, 2]) == 2
    chunk = M.encode_message(T.UploadBegin(10), version=1)  # chunked transfers are protocol 2
    with pytest.raises(VersionMismatch, match="needs protocol version 2"):
        M.decode_message(chunk)
    with pytest.raises(VersionMismatch, match="no common"):
        M.negotiate([5, 6])


def test_limits_refuse_oversized_messages():
    limits = CodecLimits(max_message_bytes=500, max_frames=4)
    with pytest.raises(MessageTooLarge, match="bytes"):
        decode(_frames(), limits)  # the 12x16x3 image alone is 576 bytes
    with pytest.raises(MessageTooLarge, match="frames"):
        decode([b"{}"] * 5, limits)


def test_field_validation_names_the_field():
    bad_settings = M.Submit(make_arrays(), IMG, None, M.JobSettings())
    body, arrays = bad_settings.to_wire()
    body["settings"]["steps"] = 0
    with pytest.raises(ProtocolError, match="settings.steps"):
        M.Submit.from_wire(body, arrays)
    body["settings"]["steps"] = 5
    arrays["g.sh"] = arrays["g.sh"].astype(np.float64)
    with pytest.raises(ProtocolError, match="float32"):
        M.Submit.from_wire(body, arrays)
    arrays["g.sh"] = arrays["g.sh"].astype(np.float32)
    arrays["g.means"] = arrays["g.means"].copy()
    arrays["g.means"][0, 0] = np.nan
    with pytest.raises(ProtocolError, match="non-finite"):
        M.Submit.from_wire(body, arrays)
    arrays["g.means"][0, 0] = 0
    body["cameras"] = [dict(CAM, fx=-1.0)]
    with pytest.raises(ProtocolError, match="focal"):
        M.Submit.from_wire(body, arrays)
    body["cameras"] = None
    arrays["style"] = np.zeros((4, 4), np.uint8)
    with pytest.raises(ProtocolError, match="style"):
        M.Submit.from_wire(body, arrays)


def test_recv_message_refuses_lying_or_oversized_messages_and_keeps_socket_usable():
    zmq = pytest.importorskip("zmq")
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        port = a.bind_to_random_port("tcp://127.0.0.1")
        b.connect(f"tcp://127.0.0.1:{port}")
        limits = CodecLimits(max_message_bytes=10_000, max_frames=8)
        big = encode("ping", {}, {"echo.a": np.zeros(3000, np.float32)})  # declares 12000 bytes
        b.send_multipart(big)
        head = json.loads(bytes(big[0]))
        head["arrays"][0]["shape"] = [2]  # declares 8 bytes, sends 12000
        b.send_multipart([json.dumps(head).encode(), big[1]])
        b.send_multipart([json.dumps(head).encode()])  # truncated: the array frame is missing
        b.send_multipart([b"z"] * 20)  # not a header at all
        b.send_multipart([bytes(f) for f in encode("ok", {"message": "fine"}, rid="x")] + [b"extra"])
        b.send_multipart(M.encode_message(M.Preview("0123456789ab", 3, IMG), rid="y"))
        expected = [
            (MessageTooLarge, "declares 12"),
            (ProtocolError, "hold more"),
            (ProtocolError, "truncated"),
            (ProtocolError, "JSON"),
            (ProtocolError, "beyond"),
        ]
        for exc, match in expected:
            with pytest.raises(exc, match=match):
                recv_message(a, limits)
        _, decoded = recv_message(a, limits)
        msg, rid = M.message_from(decoded)
        assert rid == "y" and np.array_equal(msg.image, IMG)
        assert not a.poll(50)  # everything was consumed, nothing left over
    finally:
        a.close(0)
        b.close(0)
        ctx.term()


def test_header_refusals_keep_the_request_id():
    """Issue 11.3: a refused header still names its rid, so the client gets `too_large` at once instead of
    waiting out its timeout."""
    zmq = pytest.importorskip("zmq")
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        port = a.bind_to_random_port("tcp://127.0.0.1")
        b.connect(f"tcp://127.0.0.1:{port}")
        limits = CodecLimits(max_message_bytes=10_000, max_header_bytes=2048)
        b.send_multipart(encode("submit", {}, {"style": np.zeros(20_000, np.uint8)}, rid="r-big"))
        b.send_multipart([bytes(encode("ping", {"pad": "x" * 4000}, rid="r-head")[0])])
        head = json.loads(bytes(encode("ping", {}, rid="r-body")[0]))
        head["body"] = []
        b.send_multipart([json.dumps(head).encode()])
        for rid, exc in (("r-big", MessageTooLarge), ("r-head", MessageTooLarge), ("r-body", ProtocolError)):
            with pytest.raises(exc) as info:
                recv_message(a, limits)
            assert info.value.rid == rid
    finally:
        a.close(0)
        b.close(0)
        ctx.term()


def test_job_ids_match_whole_strings_only():
    assert F.job_id("x", "0123456789ab") == "0123456789ab"
    for bad in ("0123456789ab\n", "0123456789abc", " 0123456789ab", "0123456789AB", "../../etc/pa"):
        with pytest.raises(ProtocolError, match="job id"):
            F.job_id("x", bad)


def test_ping_carries_no_payload():
    with pytest.raises(ProtocolError, match="unexpected array"):
        M.Ping.from_wire({}, {"echo.a": np.zeros(10, np.float32)})
    with pytest.raises(ProtocolError, match="unexpected array"):
        M.Pong.from_wire({"server": "e", "time": 1.0}, {"echo.a": np.zeros(10, np.float32)})


@pytest.mark.parametrize(
    "change, match",
    [
        ({"fx": 1e9}, "field of view"),  # fov 3.7e-6 degrees
        ({"fy": 0.01}, "field of view"),  # fov ~179.96 degrees
        ({"cx": 1e6}, "principal point"),
        ({"world_to_camera": (np.eye(4) * 2).tolist()}, "last row"),
        ({"world_to_camera": np.diag([2.0, 1.0, 1.0, 1.0]).tolist()}, "orthonormal"),
    ],
)
def test_absurd_cameras_are_refused_at_submit(change, match):
    F.camera_dict("cam", CAM)  # the reference camera (35 degrees, centred) passes
    with pytest.raises(ProtocolError, match=match):
        F.camera_dict("cam", dict(CAM, **change))


def test_progress_event_round_trips_through_the_wire():
    ev = ProgressEvent(3, 9, "optimize", {"style": 0.5, "nan": float("nan")}, None, 1.25, job_id=INFO.id)
    frames = M.encode_message(M.Progress.from_event(ev))
    back, _ = M.decode_message([bytes(f) for f in frames])
    out = back.to_event()
    assert isinstance(out, ProgressEvent)
    assert (out.step, out.total_steps, out.phase, out.elapsed_s, out.job_id) == (
        3,
        9,
        "optimize",
        1.25,
        INFO.id,
    )
    assert out.losses == {"style": 0.5}  # the NaN loss cannot travel and is dropped
    pv, _ = M.decode_message([bytes(f) for f in M.encode_message(M.Preview(INFO.id, 3, IMG))])
    assert pv.to_event().kind == "preview" and np.array_equal(pv.to_event().preview, IMG)


@pytest.mark.parametrize(
    "layout, match",
    [
        ([], "list of 1..128 arrays"),
        ([{"name": "a", "dtype": "<f4"}], "exactly name, dtype, shape"),
        ([{"name": "a", "dtype": "O", "shape": [2]}], "dtype 'O' is not allowed"),
        ([{"name": "a", "dtype": "<f4", "shape": [-1]}], "non-negative integers"),
        ([{"name": "a", "dtype": "<f4", "shape": [1]}] * 2, "listed twice"),
    ],
)
def test_transfer_layouts_are_checked_and_name_the_problem(layout, match):
    with pytest.raises(ProtocolError, match=match):
        T.check_layout("submit.upload_arrays", layout)
    good = T.check_layout("x", [{"name": "g.sh", "dtype": "<f4", "shape": [3, 16, 3]}])
    assert T.layout_bytes(good) == 3 * 16 * 3 * 4
    body = {"job_id": "0123456789ab", "nbytes": 5, "arrays": [{"name": "a", "dtype": "|u1", "shape": [4]}]}
    with pytest.raises(ProtocolError, match="not the size of its arrays"):
        T.ResultInfo.from_wire(body, {})
    with pytest.raises(ProtocolError, match="16 lowercase hex"):
        T.UploadChunk.from_wire({"upload_id": "../../etc", "offset": 0}, {"data": np.ones(1, np.uint8)})
    with pytest.raises(ProtocolError, match="non-empty 1-D"):
        T.UploadChunk.from_wire({"upload_id": "0" * 16, "offset": 0}, {"data": np.ones((2, 2), np.uint8)})
