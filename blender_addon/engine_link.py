"""Runs `jobs.StylizeTask`s inside Blender without ever blocking the UI.

In the UI each task ticks in its own worker thread (every network call, the engine start and the result
fetch happen there); a `bpy.app.timers` callback only reads `task.snapshot()`, mirrors it into the window
manager's `splatbrush` state, the status bar and the preview image, and imports a finished result as a new
object with the source's transform. Runs queued together (Stylize on several objects) go one after the
other. Under `blender -b` a run goes to completion synchronously and prints its progress.

A local engine started here is stopped when the add-on is disabled (or Blender exits).
"""

from __future__ import annotations

import atexit
import subprocess
import time
from dataclasses import dataclass, field

import bpy
import numpy as np

from . import splats
from .engine_setup import default_log_path
from .jobs import EngineOptions, StylizeTask, TaskStatus, format_seconds, start_local_engine

PREVIEW_IMAGE = "Splatbrush Preview"
TICK_SECONDS = 0.2
PRINT_EVERY_S = 5.0  # background mode: a progress line at least this often (and at each new 10 %)


@dataclass
class Run:
    task: StylizeTask
    source_name: str
    matrix_world: object  # mathutils.Matrix copy of the source's transform
    collections: list[str]
    result_name: str = ""
    status: TaskStatus = field(default_factory=TaskStatus)
    """The latest snapshot of the task's status (main thread only)."""
    max_tick_s: float = 0.0
    """The longest time one timer tick spent on this run (the UI freeze it caused)."""
    transform_result: object = None
    """Optional callable(result SplatArrays) -> SplatArrays applied before the import (partial
    stylization, strength)."""


_runs: list[Run] = []  # queued and running, in order; the first unfinished one runs
_processes: list[subprocess.Popen] = []  # local engines this add-on started
last_run: Run | None = None  # the latest finished run (for scripts and tests)
finished_runs: list[Run] = []  # every run finished since the add-on was enabled (newest last)


def engine_log_path():
    return default_log_path()


def _launch(options: EngineOptions, log_path) -> subprocess.Popen:
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


def current_run() -> Run | None:
    return next((r for r in _runs if not r.task.finished), None)


def start(context, task: StylizeTask, source, synchronous: bool | None = None, transform_result=None) -> Run:
    """Queue `task` for the object `source`. Synchronous (default: in background mode) runs it to the end
    before returning; otherwise it starts (in a worker thread) once the runs queued before it ended.
    `transform_result(arrays) -> arrays` is applied to the result before its object is made."""
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
        transform_result=transform_result,
    )
    _runs.append(run)
    state = context.window_manager.splatbrush
    state.running, state.progress, state.status = True, 0.0, "starting..."
    state.source_object = source.name
    if synchronous:
        _run_synchronously(run)
    else:
        _start_next()
        if not bpy.app.timers.is_registered(_timer):
            bpy.app.timers.register(_timer, first_interval=0.05)
    return run


def _start_next() -> None:
    run = current_run()
    if run is not None and run.task._thread is None:
        run.task.start_thread()


def _run_synchronously(run: Run) -> None:
    task, printed_at, printed_tenth = run.task, 0.0, -1
    while not task.finished:
        task.tick()
        _mirror(run)
        status = run.status
        tenth = int(status.fraction * 10)
        if time.monotonic() - printed_at > PRINT_EVERY_S or tenth > printed_tenth:
            printed_at, printed_tenth = time.monotonic(), tenth
            print(f"Splatbrush: {run.source_name}: {status.text()} ({format_seconds(status.elapsed_s)})")
        if not task.finished:
            time.sleep(0.05)
    _finish(run)


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
    finished_runs.clear()
    last_run = None
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
    stop_engines()


def _timer():
    for run in list(_runs):
        t0 = time.perf_counter()
        if run.task._thread is None and not run.task.finished:
            continue  # queued behind another run
        _mirror(run)
        if run.task.finished:
            try:
                _finish(run)
            except (ValueError, RuntimeError) as e:  # shown in the panel; the timer must survive
                bpy.context.window_manager.splatbrush.status = f"could not import the result: {e}"
            _start_next()
        run.max_tick_s = max(run.max_tick_s, time.perf_counter() - t0)
    _redraw()
    return TICK_SECONDS if _runs else None


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "IMAGE_EDITOR", "STATUSBAR", "PROPERTIES"):
                area.tag_redraw()


def _mirror(run: Run) -> None:
    status = run.status = run.task.snapshot()
    state = bpy.context.window_manager.splatbrush
    state.progress = status.fraction
    queued = sum(1 for r in _runs if not r.task.finished) - 1
    state.status = status.text() + (f" (+{queued} queued)" if queued > 0 else "")
    state.notes = " | ".join(status.notes)
    if status.preview is not None:
        set_preview(status.preview)


def set_preview(rgb: np.ndarray) -> None:
    """Show an uint8 [H, W, 3] image (top row first) in the 'Splatbrush Preview' image, updated in place
    (an Image Editor showing it refreshes; `splatbrush.show_preview` opens one)."""
    h, w = rgb.shape[:2]
    image = bpy.data.images.get(PREVIEW_IMAGE)
    if image is None:
        image = bpy.data.images.new(PREVIEW_IMAGE, w, h, alpha=False)
        image.colorspace_settings.name = "sRGB"
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
    finished_runs.append(run)
    if run in _runs:
        _runs.remove(run)
    task = run.task
    run.status = task.snapshot()
    state = bpy.context.window_manager.splatbrush
    state.running = is_running()
    if task.status.state != "done" or task.result is None:
        state.status = f"{task.status.state}: {task.status.message}"
        print(f"Splatbrush: stylize {run.source_name!r} {task.status.state}: {task.status.message}")
        return
    collection = next(
        (bpy.data.collections[n] for n in run.collections if n in bpy.data.collections),
        bpy.context.scene.collection,
    )
    name = f"{run.source_name} stylized"
    result = task.result if run.transform_result is None else run.transform_result(task.result)
    obj = splats.create_splat_object(
        bpy.context, result, name, source=f"stylized from {run.source_name}", collection=collection
    )
    obj.matrix_world = run.matrix_world
    run.result_name = obj.name
    state.progress = 1.0
    total = task.status.timings.get("total", 0.0)
    state.status = f"done in {total:.1f} s: {obj.name}"
    print(f"Splatbrush: stylized {run.source_name!r} -> {obj.name!r} ({total:.1f} s)")


# ------------------------------------------------------------------------------------------ status bar
def draw_status_bar(self, context) -> None:
    """Appended to the status bar: the running job's progress and ETA, so it shows in every workspace."""
    state = getattr(context.window_manager, "splatbrush", None)
    if state is None or not is_running():
        return
    row = self.layout.row(align=True)
    text = f"Splatbrush: {state.status}"[:90]
    if hasattr(row, "progress"):
        row.progress(factor=state.progress, type="BAR", text=text)
    else:
        row.label(text=text, icon="BRUSH_DATA")
