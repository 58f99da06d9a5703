"""The Stylize job as a state machine driven by `tick()` calls (no bpy): start or reach the engine, submit,
follow progress, fetch the result.

Every blocking call (starting the engine, the submit, heartbeats, the result fetch) happens inside `tick()`.
In Blender's UI `start_thread()` runs the ticks in a worker thread, and the main thread only reads
`snapshot()` (never blocks); under `blender -b` `engine_link` ticks it in a loop until it ends.

States: starting -> submitting -> running -> fetching -> done | failed | cancelled

The engine is declared gone when the process this add-on started has exited (at once), or when nothing has
answered for `EngineOptions.heartbeat_timeout` seconds; the message says so and where the engine's log is.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .engine_setup import (  # noqa: F401  (re-exported: the add-on's public names for the engine)
    SET_PYTHON_HINT,
    EngineOptions,
    engine_command,
    log_size,
    log_tail,
    start_local_engine,
    validate_address,
)

FINAL_STATES = ("done", "failed", "cancelled")
ACTIVE_JOB_STATES = ("queued", "running")
STATUS_EVERY_S = 1.0  # heartbeat: ask for the job's status this often while it runs


@dataclass
class TaskStatus:
    """What the add-on shows about one Stylize run; `event` is the latest engine progress event (a
    `shared_protocol.events.ProgressEvent`), the other fields are the add-on's own view."""

    state: str = "starting"
    step: int = 0
    total_steps: int = 0
    message: str = ""
    phase: str = ""
    preview: np.ndarray | None = None  # [H, W, 3] uint8, the latest preview image (None until one comes)
    timings: dict[str, float] = field(default_factory=dict)
    eta_s: float | None = None
    """Seconds left, from the step rate so far (None until two steps were seen)."""
    elapsed_s: float = 0.0
    earlier_jobs: list[dict] = field(default_factory=list)
    """Unfinished jobs of an earlier session found on the engine ({"id", "state", "name", "step", ...})."""
    notes: list[str] = field(default_factory=list)
    """Things the user should know about this run (shown under the progress bar), e.g. earlier jobs."""
    event: Any = None

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    def text(self) -> str:
        """One line for the panel, the status bar and the console: "running 12/40, 1:05 left: optimize"."""
        parts = [self.state]
        if self.total_steps:
            parts[0] += f" {self.step}/{self.total_steps}"
        if self.eta_s is not None and self.state == "running":
            parts.append(f"{format_seconds(self.eta_s)} left")
        head = ", ".join(parts)
        return f"{head}: {self.message}" if self.message else head


def format_seconds(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def make_client(options: EngineOptions, timeout: float = 10.0):
    from ._shared import shared_module

    client_mod = shared_module("client")
    return client_mod.EngineClient(
        address=options.address,
        server_public_key=options.server_public_key.strip() or None,
        client_keys=options.client_keys.strip() or None,
        timeout=timeout,
    )


def event_dict(event: Any) -> dict:
    """An event from `job.poll()` as a dict, whether the client gives dicts or event objects."""
    if isinstance(event, dict):
        return event
    out = {k: v for k, v in vars(event).items() if not k.startswith("_")}
    out.setdefault("type", getattr(event, "TYPE", type(event).__name__.lower()))
    return out


def progress_event(ev: dict):
    """A dict from `event_dict` as the one progress event type, `shared_protocol.events.ProgressEvent`."""
    from ._shared import shared_module

    cls = shared_module("events").ProgressEvent
    known = {k: ev[k] for k in cls.__dataclass_fields__ if k in ev}
    known.setdefault("step", 0)
    known.setdefault("total_steps", 0)
    if not isinstance(known.get("preview"), np.ndarray):
        known["preview"] = ev.get("image") if isinstance(ev.get("image"), np.ndarray) else None
    return cls(**known)


class EngineGone(RuntimeError):
    """The engine died or stopped answering while a job ran."""


class StylizeTask:
    """One Stylize run. Construct, then call `tick()` until `status.state` is final (or `start_thread()`
    and read `snapshot()`); `result` then holds the stylized SplatArrays (state done)."""

    def __init__(
        self,
        options: EngineOptions,
        gaussians,
        style_image: np.ndarray,
        cameras,
        settings: dict,
        client_factory=make_client,
        launcher=start_local_engine,
        log_path: Path | None = None,
    ):
        self.options = options
        self.gaussians = gaussians
        self.style_image = style_image
        self.cameras = cameras
        self.settings = settings
        self.status = TaskStatus()
        self.result = None
        self.report: dict = {}
        self.process = None  # the subprocess.Popen of an engine this task started
        self._client_factory = client_factory
        self._launcher = launcher
        self._log_path = log_path
        self._log_offset = 0
        self._client = None
        self._job = None
        self._started_at = time.monotonic()
        self._phase_at = self._started_at
        self._cancel_requested = False
        self._cancel_sent_at: float | None = None
        self._last_status = time.monotonic()
        self._heard_at = time.monotonic()
        self._first_step: tuple[float, int] | None = None
        self._lock = threading.Lock()
        self._preview: np.ndarray | None = None
        self._thread: threading.Thread | None = None

    # --------------------------------------------------------------------------------- public
    @property
    def finished(self) -> bool:
        return self.status.state in FINAL_STATES

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    def cancel(self) -> None:
        """Ask the job to stop. Never blocks: the next tick (the worker thread's) tells the engine."""
        self._cancel_requested = True

    def tick(self) -> TaskStatus:
        """Advance the job by one step. May block (network, engine start): in the UI it runs in a thread."""
        if self.finished:
            return self.status
        try:
            if self._cancel_requested and self._handle_cancel():
                return self.status
            handler = getattr(self, f"_tick_{self.status.state}")
            handler()
        except Exception as e:  # shown to the user by the operator, with its type
            self._finish("failed", str(e) if isinstance(e, EngineGone) else f"{type(e).__name__}: {e}")
        self.status.elapsed_s = time.monotonic() - self._started_at
        return self.status

    def run_to_end(self, poll_interval: float = 0.1, timeout: float | None = None) -> TaskStatus:
        """Blocking loop (for `blender -b` and scripts)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.tick()
            if self.finished:
                return self.status
            if deadline is not None and time.monotonic() > deadline:
                self._finish("failed", f"timed out after {timeout:.0f} s")
                return self.status
            time.sleep(poll_interval)

    def start_thread(self, poll_interval: float = 0.1) -> threading.Thread:
        """Tick in a daemon worker thread until the job ends; the caller reads `snapshot()`."""

        def work():
            while not self.finished:
                self.tick()
                if not self.finished:
                    time.sleep(poll_interval)

        self._thread = threading.Thread(target=work, name="splatbrush-stylize", daemon=True)
        self._thread.start()
        return self._thread

    def snapshot(self) -> TaskStatus:
        """A copy of the status for another thread; its `preview` is the newest image not taken before."""
        with self._lock:
            preview, self._preview = self._preview, None
        return replace(
            self.status,
            preview=preview,
            timings=dict(self.status.timings),
            earlier_jobs=list(self.status.earlier_jobs),
            notes=list(self.status.notes),
        )

    # --------------------------------------------------------------------------------- states
    def _mark(self, name: str) -> None:
        now = time.monotonic()
        self.status.timings[name] = now - self._phase_at
        self._phase_at = now

    def _handle_cancel(self) -> bool:
        """True when the task ended here."""
        if self._job is None:
            self._finish("cancelled", "cancelled before the job started")
            return True
        now = time.monotonic()
        if self._cancel_sent_at is None:
            self._cancel_sent_at = now
            try:
                self._job.cancel()
            except Exception as e:  # the engine may be gone; the task still ends as cancelled
                self._finish("cancelled", f"cancelled (the engine did not confirm: {e})")
                return True
            self.status.message = "cancelling..."
        elif now - self._cancel_sent_at > self.options.heartbeat_timeout:
            self._finish("cancelled", "cancelled (the engine did not confirm in time)")
            return True
        return False

    def _engine_log_hint(self) -> str:
        if self._log_path is None:
            return ""
        tail = log_tail(self._log_path, self._log_offset)
        return f"; its log: {self._log_path}" + (f" (last lines: {tail})" if tail else "")

    def _tick_starting(self) -> None:
        if self._client is None:
            validate_address(self.options.address)
            self._client = self._client_factory(self.options, timeout=1.0)
        try:
            self._client.ping(timeout=0.5)
        except Exception as e:  # EngineUnavailable or a timeout: nobody answers yet
            self._engine_not_answering(e)
            return
        self._mark("connect")
        self._check_earlier_jobs()
        self.status.state = "submitting"
        self.status.message = "sending the scene..."

    def _engine_not_answering(self, error: Exception) -> None:
        if self.process is None:
            if not (self.options.auto_start and self.options.is_loopback()):
                raise RuntimeError(
                    f"no engine answers at {self.options.address} ({error}). Start one with "
                    "`splatbrush serve`, or enable 'Start a local engine' in the add-on preferences."
                ) from error
            self._log_offset = log_size(self._log_path)
            self.process = self._launcher(self.options, self._log_path)
            where = f" (its log: {self._log_path})" if self._log_path else ""
            self.status.message = f"starting the engine{where}..."
            return
        if self.process.poll() is not None:
            raise RuntimeError(
                f"the engine exited with code {self.process.returncode} before answering"
                + self._engine_log_hint()
                + f". {SET_PYTHON_HINT}"
            ) from error
        if time.monotonic() - self._started_at > self.options.start_timeout:
            raise RuntimeError(
                f"the engine did not answer within {self.options.start_timeout:.0f} s "
                f"at {self.options.address}" + self._engine_log_hint()
            ) from error

    def _check_earlier_jobs(self) -> None:
        """Unfinished jobs already on the engine are listed; on an engine this task started they come from an
        earlier session (a crash) and are cancelled unless the preference says keep them."""
        if not hasattr(self._client, "list_jobs"):
            return
        self._client.timeout = max(getattr(self._client, "timeout", 1.0) or 1.0, 10.0)
        try:
            listed = self._client.list_jobs()
        except Exception as e:  # an engine that cannot list its jobs still runs ours
            self.status.notes.append(f"could not list the engine's jobs: {type(e).__name__}: {e}")
            return
        active = [j for j in listed if j.get("state") in ACTIVE_JOB_STATES]
        if not active:
            return
        self.status.earlier_jobs = [
            {k: j.get(k) for k in ("id", "state", "name", "step", "total_steps")} for j in active
        ]
        ids = ", ".join(str(j.get("id")) for j in active)
        if self.process is not None and self.options.earlier_jobs == "cancel":
            for j in active:
                self._client.attach(j["id"], watch=False).cancel()
            for j in self.status.earlier_jobs:
                j["state"] = "cancelled"
            note = f"cancelled {len(active)} unfinished job(s) of an earlier session: {ids}"
        else:
            note = f"{len(active)} earlier job(s) run before this one: {ids}"
        self.status.notes.append(note)
        print(f"Splatbrush: {note}")

    def _tick_submitting(self) -> None:
        self._client.timeout = max(getattr(self._client, "timeout", 10.0) or 10.0, 60.0)
        self._job = self._client.submit(
            gaussians=self.gaussians,
            style_image=self.style_image,
            cameras=self.cameras,
            settings=self.settings,
        )
        self._mark("submit")
        self._client.timeout = min(2.0, self.options.heartbeat_timeout / 2)  # heartbeats answer fast
        self._heard_at = self._last_status = time.monotonic()
        self.status.state = "running"
        self.status.message = "queued"

    def _check_process(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise EngineGone(
                f"the engine died (exit code {self.process.returncode}) while running the job"
                + self._engine_log_hint()
            )

    def _heartbeat(self) -> list[dict]:
        now = time.monotonic()
        if now - self._last_status < STATUS_EVERY_S:
            return []
        self._last_status = now
        try:
            ev = event_dict(self._job.status())
        except Exception as e:
            self._check_process()
            silent = time.monotonic() - self._heard_at
            if silent > self.options.heartbeat_timeout:
                raise EngineGone(
                    f"the engine at {self.options.address} stopped answering {silent:.0f} s ago (no "
                    f"heartbeat: {type(e).__name__}); it probably died" + self._engine_log_hint()
                ) from e
            return []
        self._heard_at = time.monotonic()
        return [ev]

    def _tick_running(self) -> None:
        self._check_process()
        events = [event_dict(raw) for raw in self._job.poll()]
        if events:
            self._heard_at = time.monotonic()
        for ev in events + self._heartbeat():
            self._take_progress(ev)
            state = ev.get("state")
            if not isinstance(state, str):
                continue
            self.status.message = ev.get("phase") or state
            if state == "done":
                self._mark("optimize")
                self.status.state = "fetching"
                self.status.message = "fetching the result..."
            elif state in ("failed", "cancelled"):
                detail = ev.get("error") or ev.get("message") or ""
                self._finish(state, f"the engine reports the job {state}" + (f": {detail}" if detail else ""))
                return

    def _take_progress(self, ev: dict) -> None:
        step, total = ev.get("step"), ev.get("total_steps")
        if isinstance(total, int) and total > 0:
            self.status.total_steps = total
        if isinstance(step, int) and step > self.status.step:
            self.status.step = step
            now = time.monotonic()
            if self._first_step is None:
                self._first_step = (now, step)
            elif step > self._first_step[1] and self.status.total_steps:
                rate = (now - self._first_step[0]) / (step - self._first_step[1])
                self.status.eta_s = rate * max(0, self.status.total_steps - step)
        if isinstance(ev.get("phase"), str) and ev.get("phase"):
            self.status.phase = ev["phase"]
        try:
            self.status.event = progress_event(ev)
        except (ImportError, TypeError, ValueError):
            pass  # an event of an unknown shape: the fields above still count
        preview = ev.get("preview", ev.get("image"))
        if isinstance(preview, np.ndarray) and preview.ndim == 3:
            self.status.preview = preview
            with self._lock:
                self._preview = preview

    def _tick_fetching(self) -> None:
        self._client.timeout = max(getattr(self._client, "timeout", 10.0) or 10.0, 60.0)
        self.result = self._job.result()
        self.report = dict(getattr(self._job, "report", None) or {})
        self._mark("fetch")
        self._finish("done", "done")

    def _finish(self, state: str, message: str) -> None:
        self.status.message = message
        self.status.eta_s = None
        self.status.timings["total"] = time.monotonic() - self._started_at
        self.status.state = state  # last: another thread that sees a final state sees the rest too
        if self._client is not None and hasattr(self._client, "close"):
            try:
                self._client.close()
            except Exception:  # closing a broken socket must not hide the real outcome
                pass
