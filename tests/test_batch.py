"""`splatbrush batch`: assets x styles x settings through a live engine, resumable, HTML summary."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from server_helpers import ThreadedEngine, make_arrays

from engine.batch import ManifestError, load_manifest
from engine.cli import main
from engine.server import SyntheticRunner
from shared_protocol.splatfile import read_splats, write_splats


@pytest.fixture
def manifest(tmp_path):
    for i in range(2):
        write_splats(make_arrays(30, seed=i), tmp_path / f"asset{i}.ply")
        Image.fromarray(np.full((20, 20, 3), 60 * i, np.uint8)).save(tmp_path / f"style{i}.png")
    m = tmp_path / "batch.toml"
    m.write_text(
        'output = "out"\nassets = ["asset0.ply", "asset1.ply"]\nstyles = ["style0.png", "style1.png"]\n'
        '[[settings]]\nname = "a"\nsteps = 3\n[[settings]]\nname = "b"\nsteps = 4\nseed = 2\n'
    )
    return m


def test_batch_runs_every_combination_and_resumes(tmp_path, manifest):
    e = ThreadedEngine(tmp_path / "state", SyntheticRunner(step_s=0.0))
    try:
        argv = ["batch", str(manifest), "--address", e.address, "--thumbnail-size", "24"]
        assert main(argv) == 0
        out = tmp_path / "out"
        state = json.loads((out / "batch_state.json").read_text())
        assert len(state) == 8 and all(s["state"] == "done" for s in state.values())
        for s in state.values():
            g = read_splats(out / s["output"])
            src = read_splats(s["asset"])
            assert np.array_equal(g.means, src.means) and not np.array_equal(g.sh, src.sh)
            assert s["metrics"]["mean_abs_dc_change"] > 0
        page = (out / "index.html").read_text()
        assert page.count("<tr>") == 9 and "8 of 8 done" in page
        assert (out / "thumbs" / "asset0__style0__a.before.png").is_file() and 'alt="after"' in page

        with e.client() as c:
            n_jobs = len(c.list_jobs())
        # rerun: nothing is resubmitted; a lost output file is fetched again from the same job
        lost = next(iter(state.values()))
        (out / lost["output"]).unlink()
        assert main(argv) == 0
        again = json.loads((out / "batch_state.json").read_text())
        assert {k: v["job_id"] for k, v in again.items()} == {k: v["job_id"] for k, v in state.items()}
        assert (out / lost["output"]).is_file()
        with e.client() as c:
            assert len(c.list_jobs()) == n_jobs
            c.clean()  # the engine forgets its jobs: a combination without output is resubmitted
        (out / lost["output"]).unlink()
        assert main(argv) == 0
        with e.client() as c:
            assert len(c.list_jobs()) == 1
    finally:
        e.stop()


def test_manifest_errors_name_the_problem(tmp_path, manifest):
    assert len(load_manifest(manifest).combos()) == 8
    bad = tmp_path / "bad.toml"
    bad.write_text('assets = ["nope.ply"]\nstyles = ["style0.png"]\n')
    with pytest.raises(ManifestError, match="nope.ply"):
        load_manifest(bad)
    bad.write_text('assets = ["asset0.ply"]\nstyles = ["style0.png"]\n[[settings]]\nstepz = 3\n')
    with pytest.raises(ManifestError, match="stepz"):
        load_manifest(bad)


def test_thumbnails_use_the_given_camera(tmp_path):
    from conftest import make_camera

    from engine.batch import render_thumbnail

    g = make_arrays(30)
    cam = make_camera(32, 24).to_dict()
    assert render_thumbnail(g, 16, tmp_path / "a.png", cam)
    assert Image.open(tmp_path / "a.png").size == (16, 12)  # the camera's aspect, fitted to 16 px
    assert render_thumbnail(g, 16, tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").size == (16, 16)  # orbit view
    assert not render_thumbnail(g, 16, tmp_path / "c.png", {"fx": -1})  # a bad camera: no thumbnail, no crash


def test_a_batch_rerun_after_a_crash_makes_no_second_job(tmp_path, manifest, monkeypatch):
    """Each combination is submitted with one idempotency key (its fingerprint and attempt): a batch that
    died after the engine made a job but before batch_state.json named it gets that job back on rerun."""
    from engine.batch import engine_backend
    from engine.batch.state import BatchState

    e = ThreadedEngine(tmp_path / "state", SyntheticRunner(step_s=0.0))
    real_start, calls = BatchState.start, []

    def dies_on_the_third(self, c, backend):
        calls.append(c.key)
        if len(calls) == 3:  # submitted, not yet recorded
            raise SystemExit("killed")
        return real_start(self, c, backend)

    try:
        argv = ["batch", str(manifest), "--address", e.address, "--thumbnail-size", "0"]
        monkeypatch.setattr(BatchState, "start", dies_on_the_third)
        with pytest.raises(SystemExit):
            main(argv)
        with e.client() as c:
            assert len(c.list_jobs()) == 3
        monkeypatch.setattr(BatchState, "start", real_start)
        assert main(argv) == 0
        out = tmp_path / "out"
        state = json.loads((out / "batch_state.json").read_text())
        with e.client() as c:
            jobs = c.list_jobs()
        assert len(jobs) == 8 and {s["job_id"] for s in state.values()} == {j["id"] for j in jobs}
        assert all(s["state"] == "done" and s["attempt"] == 0 for s in state.values())

        # a combination whose job failed is submitted again, under its next attempt's key: a new job
        key, rec = next(iter(state.items()))
        e.server.store.update(rec["job_id"], state="failed", error="test")
        (out / rec["output"]).unlink()
        assert main(argv) == 0
        again = json.loads((out / "batch_state.json").read_text())
        assert again[key]["attempt"] == 1 and again[key]["job_id"] != rec["job_id"]
        assert again[key]["state"] == "done"
        assert engine_backend.idempotency_key("f" * 32, 1) == "batch-" + "f" * 32 + "-1"
        with e.client() as c:
            assert len(c.list_jobs()) == 9
    finally:
        e.stop()
