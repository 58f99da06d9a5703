"""A worker thread of the engine (engine.server.pool): runs its pool's queued jobs one at a time on its
device and reports through `post`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from shared_protocol.events import ProgressEvent
from shared_protocol.messages import JobSettings, Message, Preview, Progress

from .runners import JobInputs, JobRunner
from .store import JobStore

log = logging.getLogger(__name__)


class Worker(threading.Thread):
    """One worker thread: takes queued jobs from its pool (`take`) one at a time, runs them on `device` with
    its own runner. `cancelled` (job ids) and `stopping` are the pool's, shared by its workers."""

    def __init__(
        self,
        store: JobStore,
        runner: JobRunner,
        post: Callable[[Message], None],
        take: Callable[[Worker], str | None],
        cancelled: set[str],
        stopping: threading.Event,
        device: str = "auto",
        name: str = "splatbrush-worker",
        threads: int | None = None,
    ):
        super().__init__(name=name, daemon=True)
        self.store = store
        self.runner = runner
        self.post = post
        self.device = device
        self.threads = threads
        self._take = take
        self._cancel = cancelled
        self._stopping = stopping
        self.current: str | None = None

    def run(self) -> None:
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)
        while not self._stopping.is_set():
            job_id = self._take(self)
            if job_id is None:
                return
            try:
                self._run_job(job_id)
            except Exception:  # the worker must survive anything a job does
                log.exception("job %s: unexpected worker error", job_id)
            finally:
                self.current = None

    def _progress(self, job_id: str) -> None:
        info = self.store.get(job_id)
        if info is not None:
            self.post(
                Progress(
                    info.id,
                    info.state,
                    info.step,
                    info.total_steps,
                    info.phase,
                    info.losses,
                    info.error or "",
                )
            )

    def _run_job(self, job_id: str) -> None:
        info = self.store.get(job_id)
        if info is None or info.state != "queued":
            return
        if job_id in self._cancel:
            self.store.update(job_id, state="cancelled", finished=time.time())
            self._progress(job_id)
            return
        try:
            g, style, cameras, cfg = self.store.inputs(job_id)
            settings = JobSettings.from_dict(cfg["settings"])
            total = self.runner.total_steps(settings)
        except Exception as e:
            self._fail(job_id, f"cannot load the job's inputs: {type(e).__name__}: {e}")
            return
        self.store.update(
            job_id, state="running", started=time.time(), phase="starting", total_steps=total, error=None
        )
        self._progress(job_id)
        log.info(
            "job %s: running on %s (%d Gaussians, %s)", job_id, self.name, g.num_gaussians, settings.to_dict()
        )

        def callback(ev: ProgressEvent) -> None:
            ev = ev.wire_safe(job_id=job_id, state="running")
            self.store.update(
                job_id,
                force_write=False,
                step=ev.step,
                total_steps=ev.total_steps,
                phase=ev.phase,
                losses=ev.losses,
            )
            self.post(Progress.from_event(ev))
            if ev.preview is not None:
                self.post(Preview(job_id, ev.step, ev.preview))

        def should_stop() -> bool:
            return self._stopping.is_set() or job_id in self._cancel

        try:
            out = self.runner.run(
                JobInputs(g, style, cameras, settings, cfg.get("overrides", {})),
                callback,
                should_stop,
                self.store.checkpoint_dir(job_id),
            )
        except Exception as e:
            log.exception("job %s failed", job_id)
            self._fail(job_id, f"{type(e).__name__}: {e}")
            return
        if out.interrupted:
            if job_id in self._cancel:
                self.store.update(job_id, state="cancelled", finished=time.time(), phase="cancelled")
                log.info("job %s: cancelled at step %d", job_id, out.steps_done)
            else:
                self.store.update(job_id, state="queued", phase="paused", step=out.steps_done)
                log.info(
                    "job %s: checkpointed at step %d; it resumes when the engine restarts",
                    job_id,
                    out.steps_done,
                )
        else:
            assert out.gaussians is not None
            self.store.save_output(job_id, out.gaussians, out.report)
            self.store.update(job_id, state="done", finished=time.time(), phase="done", step=total)
            log.info("job %s: done", job_id)
        self._progress(job_id)

    def _fail(self, job_id: str, error: str) -> None:
        self.store.update(job_id, state="failed", finished=time.time(), error=error[:4000])
        self._progress(job_id)
