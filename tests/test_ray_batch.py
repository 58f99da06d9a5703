"""The Ray batch backend on a real local Ray instance (`ray.init(num_cpus=2)`): the same bytes as the local
backend, a task whose worker dies is retried by Ray, a rerun skips what is done, the summary lists every
combination. Skipped when Ray is not installed (`pip install splatbrush[ray]`)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from batch_helpers import make_inputs, outputs, write_manifest

from engine import batch

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module (~3 s to start); CPU tasks only."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """2 assets x 2 styles and their outputs from the local backend (the reference)."""
    folder = tmp_path_factory.mktemp("ray_batch")
    assets, styles = make_inputs(folder)
    m = write_manifest(folder, "local_out", assets, styles)
    records = batch.run(m, "local", thumbnails=24, progress=False, log=lambda _: None)
    assert all(r["state"] == "done" for r in records.values())
    return folder, assets, styles, outputs(folder / "local_out")


def test_ray_gives_the_local_bytes_resumes_and_summarizes(tmp_path, local_ray, inputs):
    src, assets, styles, reference = inputs
    for name in assets + styles:  # this test changes a style: work on copies
        shutil.copy(src / name, tmp_path / name)
    m = write_manifest(tmp_path, "ray_out", assets, styles)
    out = tmp_path / "ray_out"
    logs: list[str] = []
    records = batch.run(m, "ray", thumbnails=24, progress=False, log=logs.append)

    assert len(records) == 4 and all(r["state"] == "done" for r in records.values()), records
    assert outputs(out) == reference  # bit-identical .ply files, same seed, other processes
    assert all(r["pid"] != os.getpid() and r["device"] == "cpu" for r in records.values())
    page = (out / "index.html").read_text()
    assert page.count("<tr>") == 5 and "4 of 4 done through Ray" in page
    for key in records:
        assert key in (out / records[key]["output"]).name
        assert (out / "thumbs" / f"{key}.before.png").is_file() and (
            out / "thumbs" / f"{key}.after.png"
        ).is_file()
        assert f"thumbs/{key}.after.png" in page
    assert "<th>node</th>" in page and records[key]["node"].split()[0] in page
    assert not list((out / ".checkpoints").glob("*/checkpoint.pt"))  # removed once a combination is done

    # a rerun submits nothing; a changed style reruns exactly the combinations that use it
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.ply")}
    logs.clear()
    again = batch.run(m, "ray", thumbnails=24, progress=False, log=logs.append)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.ply")} == stamps
    assert again == json.loads((out / "batch_state.json").read_text()) and "4 of 4" in logs[0]
    (tmp_path / "style1.png").write_bytes((tmp_path / "style0.png").read_bytes())
    logs.clear()
    batch.run(m, "ray", thumbnails=24, progress=False, log=logs.append)
    redone = {p.name for p in out.glob("*.ply") if p.stat().st_mtime_ns != stamps[p.name]}
    assert redone == {"asset0__style1__fast.ply", "asset1__style1__fast.ply"}
    assert "2 of 4" in logs[0]
    # style1 is now a copy of style0: its outputs are style0's bytes
    assert outputs(out)["asset0__style1__fast.ply"] == reference["asset0__style0__fast.ply"]


def test_a_task_whose_worker_dies_is_retried_and_the_batch_completes(tmp_path, local_ray, inputs):
    folder, assets, styles, reference = inputs
    m = write_manifest(
        folder, f"crash_{tmp_path.name}", assets[:1], styles, ray={"io": "driver", "max_retries": 2}
    )
    marker = tmp_path / "crashed-once"

    def crash_once(task):  # runs in the Ray worker: the first attempt of one combination kills its process
        from engine.batch.task import run_combo

        if task.key == "asset0__style1__fast" and not marker.exists():
            marker.touch()
            os._exit(1)
        return run_combo(task)

    records = batch.run(m, "ray", thumbnails=0, progress=False, log=lambda _: None, task_fn=crash_once)
    assert marker.exists(), "the failure was not injected"
    assert all(r["state"] == "done" for r in records.values()) and len(records) == 2
    got = outputs(folder / f"crash_{tmp_path.name}")
    assert got == {k: reference[k] for k in got} and len(got) == 2  # io "driver": written by the driver

    # with no retries left the combination fails with Ray's reason, the other one still completes
    marker.unlink()
    m = write_manifest(folder, f"noretry_{tmp_path.name}", assets[:1], styles, ray={"max_retries": 0})
    records = batch.run(m, "ray", thumbnails=0, progress=False, log=lambda _: None, task_fn=crash_once)
    assert records["asset0__style1__fast"]["state"] == "failed"
    assert (
        "Worker" in records["asset0__style1__fast"]["error"]
        or "died" in records["asset0__style1__fast"]["error"]
    )
    assert records["asset0__style0__fast"]["state"] == "done"


def test_a_failing_combination_reports_its_error(tmp_path, local_ray, inputs):
    folder, assets, styles, _ = inputs
    m = write_manifest(folder, f"bad_{tmp_path.name}", assets[:1], styles[:1], device="cuda")
    records = batch.run(m, "ray", thumbnails=0, progress=False, log=lambda _: None)
    rec = records["asset0__style0__fast"]
    assert rec["state"] == "failed" and "num_gpus" in rec["error"], rec
    page = (folder / f"bad_{tmp_path.name}" / "index.html").read_text()
    assert "0 of 1 done" in page and "num_gpus" in page
