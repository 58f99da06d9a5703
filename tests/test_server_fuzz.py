"""Fuzz a live engine with thousands of random, truncated, oversized and wrong-type messages (loopback only,
bounded in count and time): it keeps answering and loses no job."""

from __future__ import annotations

import json
import random
import time

import zmq
from server_helpers import STYLE, ThreadedEngine, make_arrays

from engine.server import SyntheticRunner
from shared_protocol import messages as M
from shared_protocol.client import EngineClient

N_MESSAGES = 3000
TIME_BUDGET_S = 25.0


def _random_json(r: random.Random, depth: int = 0):
    choices = [
        None,
        True,
        r.randint(-(2**70), 2**70),
        r.random() * 1e9,
        "x" * r.randint(0, 40),
        "../etc",
        "",
        float("nan"),
    ]
    if depth < 3:
        choices += [
            [_random_json(r, depth + 1) for _ in range(r.randint(0, 3))],
            {str(r.randint(0, 9)): _random_json(r, depth + 1) for _ in range(r.randint(0, 3))},
        ]
    return r.choice(choices)


def _valid_frames(r: random.Random) -> list[bytes]:
    msgs = [
        M.Submit(make_arrays(8), STYLE, None, M.JobSettings(steps=3)),
        M.Status("0123456789ab"),
        M.Cancel("abcdefabcdef"),
        M.Preview("0123456789ab", 1, STYLE),
        M.Ping(),
        M.Hello([1]),
        M.Result("0123456789ab"),
    ]
    return [bytes(f) for f in M.encode_message(r.choice(msgs), rid=f"f{r.randint(0, 10**6)}")]


def _mutant(r: random.Random) -> list[bytes]:
    kind = r.randrange(8)
    frames = _valid_frames(r)
    if kind == 0:  # random bytes
        return [r.randbytes(r.randint(0, 300)) for _ in range(r.randint(1, 4))]
    if kind == 1:  # truncated: frames dropped or cut short
        cut = frames[: r.randint(1, len(frames))]
        i = r.randrange(len(cut))
        cut[i] = cut[i][: r.randint(0, len(cut[i]))]
        return cut
    if kind == 2:  # oversized (over the engine's 256 KiB message limit), or too many frames
        return [frames[0], b"\0" * (300 * 1024)] if r.random() < 0.5 else [frames[0]] + [b"x"] * 2000
    header = json.loads(frames[0])
    if kind == 3:  # a field of the wrong type
        target = header["body"] if header["body"] and r.random() < 0.7 else header
        target[r.choice(list(target))] = _random_json(r)
    elif kind == 4:  # wrong dtype / shape declarations
        if header["arrays"]:
            spec = r.choice(header["arrays"])
            spec[r.choice(["dtype", "shape", "frames", "name"])] = r.choice(
                ["|O", "<c16", ">f4", [10**12], [-1, 3], 0, 10**9, "", "x" * 500, [2, 2, 2, 2, 2, 2]]
            )
    elif kind == 5:  # wrong message type, or a reply/event sent as a request
        header["type"] = r.choice(["job", "error", "progress", "heartbeat", "evil", "", "__init__"])
    elif kind == 6:  # unknown or missing keys
        if r.random() < 0.5 and header["body"]:
            del header["body"][r.choice(list(header["body"]))]
        else:
            header["body"][r.choice(["evil", "path", "__class__"])] = "../../x"
    else:  # protocol version games
        header["v"] = r.choice([0, 2, 999, -1, "1", None, 1.5])
    try:
        head = json.dumps(header).encode()
    except ValueError:
        head = b"{"
    return [head, *frames[1:]]


def test_fuzzed_engine_keeps_answering_and_loses_no_job(tmp_path):
    e = ThreadedEngine(tmp_path / "s", SyntheticRunner(step_s=0.01), max_message_bytes=256 * 1024)
    r = random.Random(1234)
    ctx = zmq.Context()
    try:
        with e.client() as c:
            done = c.submit(make_arrays(), STYLE, settings={"steps": 3})
            done.wait(timeout=10)
            running = c.submit(make_arrays(seed=3), STYLE, settings={"steps": 150, "seed": 9})
            before = {j["id"] for j in c.list_jobs()}

        fuzzer = ctx.socket(zmq.DEALER)
        fuzzer.setsockopt(zmq.LINGER, 0)
        fuzzer.connect(e.address)
        t0 = time.monotonic()
        sent = replies = errors = internal = 0
        for i in range(N_MESSAGES):
            if time.monotonic() - t0 > TIME_BUDGET_S:
                break
            fuzzer.send_multipart(_mutant(r))
            sent += 1
            while fuzzer.poll(0):
                reply = fuzzer.recv_multipart()
                replies += 1
                head = json.loads(reply[0])
                errors += head["type"] == "error"
                internal += head["type"] == "error" and head["body"]["code"] == "internal"
            if i % 500 == 0:  # a well-behaved client still gets answers in the middle of the storm
                with EngineClient(e.address, timeout=5) as c:
                    c.ping()
        deadline = time.monotonic() + 10
        while replies < sent and time.monotonic() < deadline:
            if fuzzer.poll(200):
                reply = fuzzer.recv_multipart()
                replies += 1
                head = json.loads(reply[0])
                errors += head["type"] == "error"
                internal += head["type"] == "error" and head["body"]["code"] == "internal"
        fuzzer.close(0)

        print(f"fuzz: {sent} sent, {replies} replies, {errors} errors in {time.monotonic() - t0:.1f} s")
        assert sent >= 1000, f"only {sent} messages in {TIME_BUDGET_S} s"
        assert internal == 0, "the engine hit an unexpected exception (see its log)"
        assert replies >= 0.95 * sent and errors >= 0.8 * replies, (sent, replies, errors)
        assert e.thread.is_alive()
        with EngineClient(e.address, timeout=5) as c:
            assert c.ping()["version"] == 2
            after = {j["id"]: j for j in c.list_jobs()}
            assert before <= set(after), "a job was lost"
            assert c.attach(running.id).result(timeout=30).num_gaussians == 40
            assert after[done.id]["state"] == "done"
            assert c.attach(done.id).result().num_gaussians == 40
    finally:
        e.stop()
        ctx.destroy(linger=0)  # closes a socket left open by a failure too (term() would wait forever)
