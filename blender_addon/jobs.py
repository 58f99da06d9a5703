"""The Stylize job as a state machine driven by `tick()` calls (no bpy): start or reach the engine, submit,
follow progress, fetch the result. `engine_link.py` calls `tick()` from a `bpy.app.timers` callback (each
call returns quickly) or, under `blender -b`, in a loop until the job ends.

States: starting -> submitting -> running -> fetching -> done | failed | cancelled
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FINAL_STATES = ("done", "failed", "cancelled")


@dataclass
class EngineOptions:
    address: str = "tcp://127.0.0.1:5557"
    """ZeroMQ address of the engine."""
    auto_start: bool = True
    """Start a local engine when none answers at `address` (loopback addresses only)."""
    python: str = ""
    """Python interpreter that has the engine installed (`<python> -m engine serve`)."""
    server_public_key: str = ""
    """Remote engine's CURVE public key (Z85, 40 chars); empty for a local engine."""
    client_keys: str = ""
    """This client's CURVE key pair: the `.key_secret` file written by `splatbrush keys generate`."""
    model_cache: str = ""
    """Folder for model weights (HF_HOME of the started engine); empty: the engine's default."""
    state_dir: str = ""
    """State directory of the started engine; empty: the engine's default."""
    start_timeout: float = 120.0
    """Seconds to wait for a started engine to answer."""

    def is_loopback(self) -> bool:
        host = self.address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
        return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


@dataclass
class TaskStatus:
    state: str = "starting"
    step: int = 0
    total_steps: int = 0
    message: str = ""
    preview: np.ndarray | None = None  # [H, W, 3] uint8, the latest preview image (None until one comes)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps if self.total_steps else 0.0


def engine_command(options: EngineOptions) -> list[str]:
    python = options.python.strip() or sys.executable
    # a path as is (Windows paths have backslashes); otherwise a command line such as "python3 -X utf8"
    argv = [python] if os.path.exists(python) else shlex.split(python, posix=os.name != "nt")
    cmd = [*argv, "-m", "engine", "serve", "--address", options.address]
    if options.state_dir:
        cmd += ["--state-dir", options.state_dir]
    return cmd


def start_local_engine(options: EngineOptions, log_path: Path | None = None) -> subprocess.Popen:
    """Launch `<python> -m engine serve --address A` in the background; its output goes to `log_path`."""
    if not options.is_loopback():
        raise ValueError(f"will not start an engine for the non-loopback address {options.address}")
    env = dict(os.environ)
    if options.model_cache:
        env["HF_HOME"] = options.model_cache
    try:
        with open(log_path, "ab") if log_path else contextlib.nullcontext(subprocess.DEVNULL) as log:
            return subprocess.Popen(engine_command(options), stdout=log, stderr=subprocess.STDOUT, env=env)
    except OSError as e:
        raise RuntimeError(
            f"could not start the engine with {options.python or sys.executable!r}: {e}. Set the engine's "
            "Python in the add-on preferences (a Python with Splatbrush installed)."
        ) from e


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
    """An event from `job.poll()` as a dict, whether the client gives dicts or message objects."""
    if isinstance(event, dict):
        return event
    out = {k: v for k, v in vars(event).items() if not k.startswith("_")}
    out.setdefault("type", getattr(event, "TYPE", type(event).__name__.lower()))
    return out


class StylizeTask:
    """One Stylize run. Construct, then call `tick()` until `status.state` is final; `result` then holds
    the stylized SplatArrays (state done)."""

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
        self.process: subprocess.Popen | None = None
        self._client_factory = client_factory
        self._launcher = launcher
        self._log_path = log_path
        self._client = None
        self._job = None
        self._started_at = time.monotonic()
        self._phase_at = self._started_at
        self._cancel_requested = False
        self._last_status = time.monotonic()

    # --------------------------------------------------------------------------------- public
    @property
    def finished(self) -> bool:
        return self.status.state in FINAL_STATES

    def cancel(self) -> None:
        self._cancel_requested = True
        if self._job is not None:
            try:
                self._job.cancel()
            except Exception as e:  # the engine may be gone; the task still ends as cancelled
                self.status.message = f"cancel: {e}"
        if self._job is None or self.status.state in ("starting", "submitting"):
            self._finish("cancelled", "cancelled before the job started")

    def tick(self) -> TaskStatus:
        """Advance the job by one short, non-blocking step (the submit and the result fetch move data)."""
        if self.finished:
            return self.status
        try:
            handler = getattr(self, f"_tick_{self.status.state}")
            handler()
        except Exception as e:  # shown to the user by the operator, with its type
            self._finish("failed", f"{type(e).__name__}: {e}")
        return self.status

    def run_to_end(self, poll_interval: float = 0.1, timeout: float | None = None) -> TaskStatus:
        """Blocking loop (for `blender -b` and scripts)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.tick()
            if self.finished:
                return self.status
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                self._finish("failed", f"timed out after {timeout:.0f} s")
                return self.status
            time.sleep(poll_interval)

    # --------------------------------------------------------------------------------- states
    def _mark(self, name: str) -> None:
        now = time.monotonic()
        self.status.timings[name] = now - self._phase_at
        self._phase_at = now

    def _tick_starting(self) -> None:
        if self._client is None:
            self._client = self._client_factory(self.options, timeout=1.0)
        try:
            self._client.ping(timeout=0.5)
        except Exception as e:  # EngineUnavailable or a timeout: nobody answers yet
            if self.process is None:
                if not (self.options.auto_start and self.options.is_loopback()):
                    raise RuntimeError(
                        f"no engine answers at {self.options.address} ({e}). Start one with "
                        "`splatbrush serve`, or enable 'Start a local engine' in the add-on preferences."
                    ) from e
                self.process = self._launcher(self.options, self._log_path)
                self.status.message = "starting the engine..."
                return
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the engine exited with code {self.process.returncode} before answering"
                    + (f"; see its log {self._log_path}" if self._log_path else "")
                    + ". Check the engine's Python in the add-on preferences."
                ) from e
            if time.monotonic() - self._started_at > self.options.start_timeout:
                raise RuntimeError(
                    f"the engine did not answer within {self.options.start_timeout:.0f} s "
                    f"at {self.options.address}"
                ) from e
            return
        self._mark("connect")
        self.status.state = "submitting"
        self.status.message = "sending the scene..."

    def _tick_submitting(self) -> None:
        self._client.timeout = max(getattr(self._client, "timeout", 10.0) or 10.0, 60.0)
        self._job = self._client.submit(
            gaussians=self.gaussians,
            style_image=self.style_image,
            cameras=self.cameras,
            settings=self.settings,
        )
        self._mark("submit")
        self.status.state = "running"
        self.status.message = "queued"
        if self._cancel_requested:
            self._job.cancel()

    def _tick_running(self) -> None:
        events = [event_dict(raw) for raw in self._job.poll()]
        if time.monotonic() - self._last_status > 1.0:  # events can be missed (reconnects): ask now and then
            self._last_status = time.monotonic()
            events.append(event_dict(self._job.status()))
        for ev in events:
            step, total = ev.get("step"), ev.get("total_steps")
            if isinstance(step, int):
                self.status.step = step
            if isinstance(total, int) and total > 0:
                self.status.total_steps = total
            preview = ev.get("preview", ev.get("image"))
            if isinstance(preview, np.ndarray) and preview.ndim == 3:
                self.status.preview = preview
            state = ev.get("state")
            if isinstance(state, str):
                self.status.message = state
                if state == "done":
                    self._mark("optimize")
                    self.status.state = "fetching"
                    self.status.message = "fetching the result..."
                elif state in ("failed", "cancelled"):
                    detail = ev.get("error") or ev.get("message") or ""
                    self._finish(
                        state, f"the engine reports the job {state}" + (f": {detail}" if detail else "")
                    )
                    return

    def _tick_fetching(self) -> None:
        self.result = self._job.result()
        self.report = dict(getattr(self._job, "report", None) or {})
        self._mark("fetch")
        self._finish("done", "done")

    def _finish(self, state: str, message: str) -> None:
        self.status.state = state
        self.status.message = message
        self.status.timings["total"] = time.monotonic() - self._started_at
        if self._client is not None and hasattr(self._client, "close"):
            self._client.close()
