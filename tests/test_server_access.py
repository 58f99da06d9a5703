"""Jobs belong to the client that submitted them (loopback: its per-user token; CURVE: its public key); only
an admin shuts the engine down or sees/cleans others' jobs. CURVE keys are reloaded (added, revoked), bad key
files skipped with a warning naming them, no wildcard; the secret key is 0600 from its first byte."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import time

import pytest
from server_helpers import STYLE, ThreadedEngine, make_arrays

from engine.server import SecurityError, SyntheticRunner, generate_keys
from engine.server.security import KeyRing
from shared_protocol.errors import EngineUnavailable, RemoteError

TOKEN_A, TOKEN_B = "a" * 32, "b" * 32


@pytest.fixture
def engine(tmp_path):
    e = ThreadedEngine(tmp_path / "state", SyntheticRunner(step_s=0.01))
    yield e
    e.stop()


def test_loopback_jobs_belong_to_their_token(engine):
    with engine.client(token=TOKEN_A) as a, engine.client(token=TOKEN_B) as b, engine.client() as admin:
        ja = a.submit(make_arrays(), STYLE, settings={"steps": 2})
        ja.wait(timeout=10)
        jb = b.submit(make_arrays(), STYLE, settings={"steps": 2})
        assert [j["id"] for j in a.list_jobs()] == [ja.id]
        assert [j["id"] for j in b.list_jobs()] == [jb.id]
        assert a.ping()["jobs"] == {"done": 1}
        from shared_protocol.client import JobHandle

        for call in (
            lambda: b.attach(ja.id),  # watch
            lambda: b.attach(ja.id, watch=False),  # status
            lambda: JobHandle(b, ja.id).result(),
            lambda: JobHandle(b, ja.id).cancel(),
        ):
            with pytest.raises(RemoteError, match="no job") as ei:
                call()
            assert ei.value.code == "not_found"  # another client's job does not exist for it
        assert b.clean([ja.id]) == [] and b.clean() == []
        with pytest.raises(RemoteError, match="only an admin") as ei:
            a.shutdown()
        assert ei.value.code == "forbidden"
        # the engine user's own token (the default) is admin: sees, fetches and cleans every job
        assert {j["id"] for j in admin.list_jobs()} == {ja.id, jb.id}
        assert admin.attach(ja.id, watch=False).result().num_gaussians == 40
        jb.wait(timeout=10)
        assert sorted(admin.clean()) == sorted([ja.id, jb.id])


def test_a_connection_that_forgot_hello_says_it_again(engine):
    with engine.client(token=TOKEN_A) as a:
        job = a.submit(make_arrays(), STYLE, settings={"steps": 2})
        engine.server.access._tokens.clear()  # as after an engine restart: a new connection, no hello yet
        assert a.attach(job.id, watch=False).id == job.id  # hello_required -> hello -> asked again


def _curve_setup(tmp_path):
    keys = tmp_path / "keys"
    server = generate_keys(keys / "server", "server")
    clients = {n: generate_keys(keys / n, n) for n in ("alice", "bob", "root")}
    allowed, admins = keys / "allowed", keys / "admins"
    allowed.mkdir()
    admins.mkdir()
    for n in ("alice", "bob"):
        shutil.copy(clients[n][0], allowed / f"{n}.key")
    shutil.copy(clients["root"][0], admins / "root.key")
    return server, clients, allowed, admins


def test_curve_jobs_belong_to_their_key_and_admin_keys_may_shut_down(tmp_path):
    (server_pub, server_sec), clients, allowed, admins = _curve_setup(tmp_path)
    e = ThreadedEngine(
        tmp_path / "s",
        SyntheticRunner(step_s=0.01),
        curve_secret_key=str(server_sec),
        authorized_keys=str(allowed),
        admin_keys=str(admins),
    )

    def client(name, **kw):
        return e.client(server_public_key=server_pub, client_keys=clients[name][1], **kw)

    try:
        with client("alice") as a, client("bob") as b, client("root") as root:
            ja = a.submit(make_arrays(), STYLE, settings={"steps": 2})
            owner = e.server.store.get(ja.id).owner
            assert owner.startswith("curve:") and len(owner) == 46  # the client's z85 public key
            assert b.list_jobs() == []
            with pytest.raises(RemoteError, match="no job"):
                b.attach(ja.id)
            with pytest.raises(RemoteError) as ei:
                a.shutdown()
            assert ei.value.code == "forbidden"
            assert [j["id"] for j in root.list_jobs()] == [ja.id]
            assert root.shutdown() == "shutting down"
        e.thread.join(10)
        assert not e.thread.is_alive()
    finally:
        e.stop()


def test_curve_keys_reload_admit_and_revoke(tmp_path, caplog):
    (server_pub, server_sec), clients, allowed, admins = _curve_setup(tmp_path)
    os.remove(allowed / "bob.key")
    e = ThreadedEngine(tmp_path / "s", curve_secret_key=str(server_sec), authorized_keys=str(allowed))
    for ring in (e.server.access.clients,):
        ring.min_interval_s = 0.1

    def client(name, **kw):
        return e.client(server_public_key=server_pub, client_keys=clients[name][1], **kw)

    try:
        with client("bob", timeout=1.0) as b:
            with pytest.raises(EngineUnavailable):
                b.ping()
        shutil.copy(clients["bob"][0], allowed / "bob.key")  # added while running
        (allowed / "broken.key").write_text("not a certificate\n")  # skipped, named in a warning
        time.sleep(0.2)
        with caplog.at_level(logging.WARNING, logger="engine.server.security"):
            with client("bob") as b, client("alice") as a:
                assert b.ping()["version"] == 2
                assert a.ping()["version"] == 2  # one bad file does not lock everyone out
                os.remove(allowed / "alice.key")  # revoked: its open connection stops working too
                time.sleep(0.2)
                with pytest.raises(RemoteError, match="no longer authorized") as ei:
                    a.list_jobs()
                assert ei.value.code == "unauthorized"
                assert b.list_jobs() == []
        assert any("broken.key" in r.getMessage() for r in caplog.records)
    finally:
        e.stop()


def test_an_engine_whose_keys_are_all_unreadable_refuses_to_start(tmp_path):
    (_, server_sec), _, allowed, _ = _curve_setup(tmp_path)
    for p in allowed.iterdir():
        p.write_text("garbage\n")
    with pytest.raises(SecurityError, match="holds no readable .key files"):
        ThreadedEngine(tmp_path / "s", curve_secret_key=str(server_sec), authorized_keys=str(allowed))


def test_keyring_refuses_wildcards_and_reloads_on_request(tmp_path):
    for bad in ("*", ""):
        with pytest.raises(SecurityError, match="no wildcard"):
            KeyRing(bad)
    (tmp_path / "*").mkdir()  # a folder really named "*" is still refused
    with pytest.raises(SecurityError, match="no wildcard"):
        KeyRing(str(tmp_path / "*").replace(str(tmp_path) + os.sep, ""))
    pub, _ = generate_keys(tmp_path / "k", "c")
    ring = KeyRing(tmp_path / "k", min_interval_s=3600)
    assert len(ring.keys) == 1
    os.remove(pub)
    assert len(ring.keys) == 1 and ring.allowed(next(iter(ring.keys)))  # not re-read yet (interval)
    ring.request_reload()  # what SIGHUP does
    ring.maybe_reload()
    assert ring.keys == frozenset()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_secret_key_is_0600_from_the_start(tmp_path, monkeypatch):
    import shared_protocol.atomic as atomic

    seen = []
    real_replace = os.replace

    def spy(src, dst):  # the moment the key file appears under its name, it is already 0600
        seen.append((str(dst), stat.S_IMODE(os.stat(src).st_mode)))
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", spy)
    old = os.umask(0)
    try:
        pub, sec = generate_keys(tmp_path / "keys", "server")
    finally:
        os.umask(old)
    assert (str(sec), 0o600) in seen
    assert stat.S_IMODE(os.stat(sec).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) == 0o700
    assert KeyRing(tmp_path / "keys").keys  # zmq.auth reads what we wrote


def test_jobs_stored_before_ownership_are_the_admins_until_adopted(tmp_path, capsys):
    """A job whose status.json has no owner (stored by an engine before ownership existed) is listed to the
    admin only; the admin adopts it (`splatbrush jobs adopt`) for itself or hands it to a client."""
    import json

    from engine.cli import main
    from engine.server.access import token_owner

    e = ThreadedEngine(tmp_path / "state", SyntheticRunner(step_s=0.001))
    with e.client(token=TOKEN_A) as a:
        old = a.submit(make_arrays(), STYLE, settings={"steps": 1})
        old.wait(timeout=10)
    e.stop()
    status = tmp_path / "state" / "jobs" / old.id / "status.json"
    status.write_text(json.dumps({k: v for k, v in json.loads(status.read_text()).items() if k != "owner"}))
    e = ThreadedEngine(tmp_path / "state", SyntheticRunner(step_s=0.001))
    try:
        with e.client(token=TOKEN_A) as a, e.client(token=TOKEN_B) as b, e.client() as admin:
            assert a.list_jobs() == [] and b.list_jobs() == []  # nobody's but the admin's
            assert [(j["id"], j["owner"]) for j in admin.list_jobs()] == [(old.id, "")]
            with pytest.raises(RemoteError, match="only an admin may adopt") as ei:
                a.adopt()
            assert ei.value.code == "forbidden"
            adopted = admin.adopt([old.id], owner=token_owner(TOKEN_B))
            assert [j["owner"] for j in adopted] == [token_owner(TOKEN_B)]
            assert [j["id"] for j in b.list_jobs()] == [old.id]  # handed to b: b sees and fetches it
            assert b.attach(old.id, watch=False).result().num_gaussians == 40
            with pytest.raises(RemoteError, match="already belongs to a client") as ei:
                admin.adopt([old.id])
            assert ei.value.code == "invalid"
            assert admin.adopt() == []  # no ownerless job is left
        assert json.loads(status.read_text())["owner"] == token_owner(TOKEN_B)  # kept across restarts
        status.write_text(json.dumps({**json.loads(status.read_text()), "owner": ""}))
        e.stop()
        e = ThreadedEngine(tmp_path / "state", SyntheticRunner(step_s=0.001))
        assert main(["jobs", "adopt", "--address", e.address]) == 0  # the CLI, as the engine user (admin)
        assert f"adopted 1 job(s)\n{old.id}" in capsys.readouterr().out
        with e.client() as admin:
            assert admin.list_jobs()[0]["owner"].startswith("user:")
    finally:
        e.stop()
