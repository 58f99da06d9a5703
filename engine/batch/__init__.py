"""Batch restyling: assets x styles x settings from a TOML manifest, resumable, with an HTML summary.

    from engine import batch
    records = batch.run("manifest.toml", backend="local")                 # in this process
    records = batch.run("manifest.toml", backend="ray", address="auto")   # Ray tasks on a cluster
    records = batch.run("manifest.toml", backend="engine", address="tcp://127.0.0.1:5557")  # a running engine

Backends:
    local   every combination in this process, one after the other (local.py)
    ray     every combination as a Ray task, one per GPU or CPU slot of a cluster (ray_backend.py)
    engine  every combination as a job of a running engine, over ZeroMQ (engine_backend.py)

The manifest format is in manifest.py; results, records and the summary in docs/batch.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .engine_backend import run_batch
from .local import run_local
from .manifest import Combo, Manifest, ManifestError, RayOptions, load_manifest
from .ray_backend import run_ray
from .state import BatchState
from .summary import render_thumbnail, style_thumbnail, thumbnail_png, write_summary
from .task import ComboTask, run_combo

BACKENDS = ("local", "ray", "engine")


def run(
    manifest: Manifest | str | Path,
    backend: str = "local",
    address: str | None = None,
    thumbnails: int = 160,
    progress: bool = True,
    log=None,
    **kw: Any,
) -> dict[str, dict[str, Any]]:
    """Run (or resume) a batch; returns {combination key: record} (also `<output>/batch_state.json`).

    `address`: ray: auto | local | ray://HOST:PORT (default: the manifest's [ray] address, else auto);
    engine: the engine's address (default: the manifest's, else tcp://127.0.0.1:5557).
    Extra keywords go to the backend (`threads=` for local, `max_in_flight=` for ray)."""
    if not isinstance(manifest, Manifest):
        manifest = load_manifest(manifest)
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    if backend == "local":
        return run_local(manifest, thumbnails, log, progress, **kw)
    if backend == "ray":
        return run_ray(manifest, address, thumbnails, log, progress, **kw)
    if backend == "engine":
        from shared_protocol.client import DEFAULT_ADDRESS, EngineClient

        with EngineClient(address or manifest.address or DEFAULT_ADDRESS, **kw) as client:
            client.ping()
            return run_batch(manifest, client, thumbnails, log)
    raise ValueError(f"unknown batch backend {backend!r}; choose one of {BACKENDS}")


__all__ = [
    "BACKENDS",
    "BatchState",
    "Combo",
    "ComboTask",
    "Manifest",
    "ManifestError",
    "RayOptions",
    "load_manifest",
    "render_thumbnail",
    "run",
    "run_batch",
    "run_combo",
    "run_local",
    "run_ray",
    "style_thumbnail",
    "thumbnail_png",
    "write_summary",
]
