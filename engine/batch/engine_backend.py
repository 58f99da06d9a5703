"""The engine backend: every combination as a job on a running engine (`splatbrush serve`), over ZeroMQ.

The engine queues the jobs and runs them on its workers (one per device, `serve --devices`). The job ids are
kept in `<output>/batch_state.json`, so running the same manifest again skips finished combinations,
re-attaches to jobs the engine is still running, and resubmits those the engine lost.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from shared_protocol.client import EngineClient
from shared_protocol.errors import RemoteError
from shared_protocol.splatfile import SplatArrays, read_splats, write_splats

from .manifest import Combo, Manifest, ManifestError
from .state import BatchState, Log
from .summary import render_thumbnail, style_thumb_name, style_thumbnail, write_summary
from .task import combo_metrics


def _job_state(client: EngineClient, st: dict[str, Any]) -> str | None:
    """The state of the record's job on the engine, None when the engine has no such job (lost, cleaned)."""
    if not st.get("job_id"):
        return None
    try:
        return client.attach(st["job_id"], watch=False).status()["state"]
    except RemoteError as e:
        if e.code != "not_found":
            raise
        return None


def idempotency_key(fingerprint: str, attempt: int) -> str:
    """One key per combination (its fingerprint: asset and style bytes, settings) and attempt, so that a
    batch retried or rerun after a crash gets the job it already made instead of a second one."""
    return f"batch-{fingerprint}-{attempt}"


def _submit_all(manifest: Manifest, state: BatchState, client: EngineClient, scene, log: Log) -> list[Combo]:
    """Submit every combination without a live job (the engine queues them); returns those to wait for.
    A combination whose job failed or was cancelled is submitted again under its next attempt's key."""
    from engine.imaging import load_image

    waiting = []
    for c in manifest.combos():
        if state.is_done(c):
            continue
        st = state.records.get(c.key, {})
        fingerprint = manifest.fingerprint(c)
        same = st.get("fingerprint") == fingerprint
        live = _job_state(client, st) if same else None
        if live in ("queued", "running", "done"):
            waiting.append(c)
            continue
        attempt = int(st.get("attempt", 0) if same else 0) + (live in ("failed", "cancelled"))
        job = client.submit(
            scene(c.asset),
            load_image(c.style),
            None,
            c.settings,
            name=c.key,
            watch=False,
            idempotency_key=idempotency_key(fingerprint, attempt),
        )
        state.start(c, "engine")
        state.records[c.key].update(job_id=job.id, state="queued", attempt=attempt)
        state.save()
        waiting.append(c)
        log(f"submitted {c.key}: job {job.id}")
    return waiting


def run_batch(
    manifest: Manifest, client: EngineClient, thumbnails: int = 160, log: Log | None = None
) -> dict[str, dict[str, Any]]:
    """Run (or resume) every combination on the engine; returns the records (<output>/batch_state.json)."""
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    with_overrides = [c.key for c in manifest.combos() if c.overrides]
    if with_overrides:
        raise ManifestError(
            manifest.path,
            f"settings `overrides` cannot be sent to an engine (combinations {with_overrides[:3]}); run "
            "them with the local or Ray backend (`splatbrush batch --local` / `--ray`)",
        )
    out = manifest.output
    state = BatchState(manifest)
    scenes: dict[Path, SplatArrays] = {}

    def scene(p: Path) -> SplatArrays:
        if p not in scenes:
            scenes[p] = read_splats(p)
        return scenes[p]

    for c in _submit_all(manifest, state, client, scene, log):
        st = state.records[c.key]
        h = client.attach(st["job_id"], watch=False)
        info = h.wait()
        st["state"] = info["state"]
        if info["state"] != "done":
            st["error"] = info.get("error") or info["state"]
            state.save()
            log(f"{c.key}: {info['state']} {st['error']}")
            continue
        result = h.result()
        name = f"{c.key}.ply"
        write_splats(result, out / name)
        if thumbnails:  # before and after from the same camera: the job's first view when it reports one
            views = (h.report or {}).get("views") or [None]
            cam = views[0] if isinstance(views[0], dict) else None
            render_thumbnail(scene(c.asset), thumbnails, out / "thumbs" / f"{c.key}.before.png", cam)
            render_thumbnail(result, thumbnails, out / "thumbs" / f"{c.key}.after.png", cam)
            if not (out / style_thumb_name(c.style)).is_file():
                style_thumbnail(c.style, thumbnails, out / style_thumb_name(c.style))
        started = info.get("started") or info.get("created") or time.time()
        wall = (info.get("finished") or time.time()) - started
        total = ((h.report or {}).get("timings") or {}).get("total", {})
        engine_s = total.get("total_s") if isinstance(total, dict) else None
        engine_s = float(engine_s) if isinstance(engine_s, (int, float)) else wall
        metrics = combo_metrics(h.report or {}, scene(c.asset), result, engine_s)
        metrics["wall_time_s"] = wall
        st.update(output=name, metrics=metrics, error=None, time_s=wall, node=client.address)
        state.save()
        log(f"{c.key}: done -> {out / name}")
    write_summary(manifest, state.records, f"the engine at {client.address}")
    return state.records
