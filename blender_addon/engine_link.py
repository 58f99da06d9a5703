"""Runs `jobs.StylizeTask`s inside Blender: a `bpy.app.timers` callback ticks them without blocking the UI
(under `blender -b` the run goes to completion synchronously), mirrors progress into the window manager's
`splatbrush` state and a preview image, and imports the result as a new object with the source's transform.

A local engine started here is stopped when the add-on is disabled (or Blender exits).
"""

from __future__ import annotations

import atexit
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from . import splats
from .jobs import EngineOptions, StylizeTask, start_local_engine

PREVIEW_IMAGE = "Splatbrush Preview"
TICK_SECONDS = 0.2


@dataclass
class Run:
    task: StylizeTask
    source_name: str
    matrix_world: object  # mathutils.Matrix copy of the source's transform
    collections: list[str]
    result_name: str = ""


_runs: list[Run] = []
_processes: list[subprocess.Popen] = []  # local engines this add-on started
last_run: Run | None = None  # the latest finished run (for scripts and tests)


def engine_log_path() -> Path:
    return Path(tempfile.gettempdir()) / "splatbrush-engine.log"


def _launch(options: EngineOptions, log_path: Path | None) -> subprocess.Popen:
    proc = start_local_engine(options, log_path)
    if not _processes:
        atexit.register(stop_engines)
    _processes.append(proc)
    return proc


def stop_engines() -> None:
    """Terminate the local engines this add-on started (not engines started by anyone else)."""
    while _processes:
        proc = _processes.pop()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    atexit.unregister(stop_engines)


def is_running() -> bool:
    return any(not run.task.finished for run in _runs)


def start(context, task: StylizeTask, source, synchronous: bool | None = None) -> Run:
    """Begin `task` for the object `source`. Synchronous (default: in background mode) runs it to the end
    before returning; otherwise a timer ticks it."""
    if synchronous is None:
        synchronous = bpy.app.background
    if task._launcher is start_local_engine:
        task._launcher = _launch  # remember the engines we start, to stop them later
    if task._log_path is None:
        task._log_path = engine_log_path()
    run = Run(
        task=task,
        source_name=source.name,
        matrix_world=source.matrix_world.copy(),
        collections=[c.name for c in source.users_collection],
    )
    _runs.append(run)
    state = context.window_manager.splatbrush
    state.running, state.progress, state.status = True, 0.0, "starting..."
    state.source_object = source.name
    if synchronous:
        while not task.finished:
            task.tick()
            _mirror(run)
            if not task.finished:
                time.sleep(0.05)
        _finish(run)
    elif not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=0.05)
    return run


def cancel_all() -> int:
    n = 0
    for run in _runs:
        if not run.task.finished:
            run.task.cancel()
            n += 1
    return n


def shutdown() -> None:
    """Cancel runs, stop the timer and the engines we started (add-on disabled)."""
    global last_run
    cancel_all()
    _runs.clear()
    last_run = None
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
    stop_engines()


def _timer():
    for run in list(_runs):
        run.task.tick()
        _mirror(run)
        if run.task.finished:
            try:
                _finish(run)
            except (ValueError, RuntimeError) as e:  # shown in the panel; the timer must survive
                bpy.context.window_manager.splatbrush.status = f"could not import the result: {e}"
    _redraw()
    return TICK_SECONDS if _runs else None


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def _mirror(run: Run) -> None:
    status = run.task.status
    state = bpy.context.window_manager.splatbrush
    state.progress = status.fraction
    steps = f" {status.step}/{status.total_steps}" if status.total_steps else ""
    state.status = f"{status.state}{steps}: {status.message}"
    if status.preview is not None:
        set_preview(status.preview)
        status.preview = None  # shown; don't upload it again


def set_preview(rgb: np.ndarray) -> None:
    """Show an uint8 [H, W, 3] image (top row first) in the 'Splatbrush Preview' image."""
    h, w = rgb.shape[:2]
    image = bpy.data.images.get(PREVIEW_IMAGE)
    if image is None:
        image = bpy.data.images.new(PREVIEW_IMAGE, w, h, alpha=False)
    elif tuple(image.size) != (w, h):
        image.scale(w, h)
    rgba = np.ones((h, w, 4), dtype=np.float32)
    rgba[:, :, :3] = rgb[::-1].astype(np.float32) / 255.0
    image.pixels.foreach_set(rgba.ravel())
    image.update()
    if not bpy.app.background:
        image.preview_ensure()
        image.preview.reload()


def _finish(run: Run) -> None:
    global last_run
    last_run = run
    if run in _runs:
        _runs.remove(run)
    task = run.task
    state = bpy.context.window_manager.splatbrush
    state.running = is_running()
    if task.status.state != "done" or task.result is None:
        state.status = f"{task.status.state}: {task.status.message}"
        print(f"Splatbrush: stylize {task.status.state}: {task.status.message}")
        return
    collection = next(
        (bpy.data.collections[n] for n in run.collections if n in bpy.data.collections),
        bpy.context.scene.collection,
    )
    name = f"{run.source_name} stylized"
    obj = splats.create_splat_object(
        bpy.context, task.result, name, source=f"stylized from {run.source_name}", collection=collection
    )
    obj.matrix_world = run.matrix_world
    run.result_name = obj.name
    state.progress = 1.0
    total = task.status.timings.get("total", 0.0)
    state.status = f"done in {total:.1f} s: {obj.name}"
    print(f"Splatbrush: stylized {run.source_name!r} -> {obj.name!r} ({total:.1f} s)")
