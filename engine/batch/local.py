"""The local backend: every pending combination in this process, one after the other, through the same
`run_combo` a Ray task runs. No engine, no Ray; uses the GPU when there is one (device "auto")."""

from __future__ import annotations

import sys
from typing import Any

from .manifest import Combo, Manifest
from .state import BatchState, Log, progress_bar, short_error
from .summary import write_summary
from .task import ComboTask, run_combo


def make_task(manifest: Manifest, c: Combo, thumbnails: int, shared_io: bool = True, **kw: Any) -> ComboTask:
    """The task of a combination. `shared_io`: paths in, output written by the task; else the driver loads
    the inputs into the task and writes what comes back (see `ray_backend`)."""
    if shared_io:
        asset: Any = str(c.asset)
        style: Any = str(c.style)
    else:
        from engine.imaging import load_image
        from shared_protocol.splatfile import read_splats

        asset, style = read_splats(c.asset), load_image(c.style)
    return ComboTask(
        key=c.key,
        asset=asset,
        style=style,
        settings=c.settings,
        overrides=c.overrides,
        fingerprint=manifest.fingerprint(c),
        output_dir=str(manifest.output) if shared_io else None,
        thumbnail_size=thumbnails,
        **kw,
    )


def run_local(
    manifest: Manifest,
    thumbnails: int = 160,
    log: Log | None = None,
    progress: bool = True,
    threads: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Run (or resume) every combination here; returns the records (also in <output>/batch_state.json)."""
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    state = BatchState(manifest)
    combos = manifest.combos()
    todo = state.pending()
    if len(todo) < len(combos):
        log(f"batch: {len(combos) - len(todo)} of {len(combos)} combination(s) already done, skipped")
    bar = progress_bar(len(combos), len(combos) - len(todo), progress)
    try:
        for c in todo:
            state.start(c, "local")
            try:
                outcome = run_combo(make_task(manifest, c, thumbnails, threads=threads))
            except Exception as e:  # one bad combination must not stop the batch; its error is recorded
                state.fail(c, short_error(e))
                log(f"{c.key}: failed: {short_error(e)}")
            else:
                rec = state.finish(c, outcome, thumbnails)
                log(f"{c.key}: done in {rec['time_s']:.1f} s -> {manifest.output / rec['output']}")
            bar.update(1)
    finally:
        bar.close()
        write_summary(manifest, state.records, "the local backend")
    return state.records
