"""The engine's command line: serve/ping/submit/jobs/keys against a live engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from server_helpers import ThreadedEngine, make_arrays

from engine.cli import main
from engine.server import SyntheticRunner
from shared_protocol.splatfile import read_splats, write_splats


@pytest.fixture
def engine(tmp_path):
    e = ThreadedEngine(tmp_path / "state", SyntheticRunner(step_s=0.02))
    yield e
    e.stop()


def test_ping_exit_codes(engine, capsys):
    assert main(["ping", "--address", engine.address]) == 0
    assert "protocol v2" in capsys.readouterr().out
    assert main(["ping", "--address", "tcp://127.0.0.1:1", "--timeout", "0.3"]) == 1
    err = capsys.readouterr().err
    assert "no Splatbrush engine answered at tcp://127.0.0.1:1" in err and "splatbrush serve" in err


def test_submit_jobs_show_cancel_clean(engine, tmp_path, capsys):
    scene, style = tmp_path / "in.ply", tmp_path / "style.png"
    g = make_arrays(25)
    write_splats(g, scene)
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(style)
    a = ["--address", engine.address]

    out = tmp_path / "out.ply"
    assert (
        main(["submit", str(scene), "--style", str(style), "--steps", "5", "--wait", "-o", str(out), *a]) == 0
    )
    done_id = capsys.readouterr().out.strip()
    assert len(done_id) == 12 and read_splats(out).num_gaussians == 25

    assert main(["submit", str(scene), "--style", str(style), "--steps", "100000", *a]) == 0
    long_id = capsys.readouterr().out.strip()
    assert main(["jobs", "show", long_id, "--json", *a]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["id"] == long_id and st["state"] in ("queued", "running") and st["total_steps"] == 100000
    assert isinstance(st["step"], int)

    assert main(["jobs", "cancel", long_id, *a]) == 0
    capsys.readouterr()
    with engine.client() as c:
        assert c.attach(long_id).wait(timeout=10)["state"] == "cancelled"
    assert main(["jobs", "list", *a]) == 0
    listing = capsys.readouterr().out
    assert done_id in listing and "done" in listing and "cancelled" in listing

    assert main(["jobs", "show", "0123456789ab", *a]) == 2
    assert "no job 0123456789ab" in capsys.readouterr().err
    assert main(["jobs", "clean", *a]) == 0
    assert "removed 2 job(s)" in capsys.readouterr().out


def test_keys_generate(tmp_path, capsys):
    assert main(["keys", "generate", "--dir", str(tmp_path), "--name", "laptop"]) == 0
    assert (tmp_path / "laptop.key").is_file() and (
        tmp_path / "laptop.key_secret"
    ).stat().st_mode & 0o077 == 0
    assert main(["keys", "generate", "--dir", str(tmp_path), "--name", "laptop"]) == 2  # never overwrites
    assert "already exists" in capsys.readouterr().err


def test_serve_refuses_public_bind_without_keys(tmp_path, capsys):
    assert main(["serve", "--address", "tcp://0.0.0.0:5557", "--state-dir", str(tmp_path)]) == 2
    assert "refusing to bind tcp://0.0.0.0:5557 without CURVE keys" in capsys.readouterr().err


def test_serve_passes_admin_and_limit_options_to_the_server(tmp_path, monkeypatch):
    import engine.server.server as server_module

    seen = {}

    class Captured(Exception):
        pass

    def fake_server(config, runner):
        seen["config"] = config
        raise Captured

    monkeypatch.setattr(server_module, "EngineServer", fake_server)
    argv = ["serve", "--state-dir", str(tmp_path), "--runner", "synthetic", "--admin-keys", str(tmp_path)]
    argv += ["--admin-token-file", str(tmp_path / "t"), "--max-job-memory-gb", "1.5", "--max-job-hours", "2"]
    argv += ["--client-queue-mb", "64", "--total-queue-mb", "256", "--max-upload-mb", "100"]
    argv += ["--max-message-mb", "8"]
    with pytest.raises(Captured):
        main(argv)
    c = seen["config"]
    assert c.admin_keys == str(tmp_path) and c.admin_token_file == str(tmp_path / "t")
    assert c.max_job_memory_bytes == int(1.5 * 2**30) and c.max_job_seconds == 7200
    assert c.client_queue_bytes == 64 * 2**20 and c.total_queue_bytes == 256 * 2**20
    assert c.max_upload_bytes == 100 * 2**20 and c.max_message_bytes == 8 * 2**20
