"""`WorkerPool`: the engine's workers, one per device, fed from one queue of the shared job store.

`serve --devices cuda:0,cuda:1` gives one worker per device (`auto`: every visible GPU, else one CPU worker);
`serve --workers N` gives N workers on `--device`. Each worker is a thread with its own runner instance (the
runner's `for_device`), so two jobs run at once in one engine process. A queued job goes to the first idle
worker, oldest job first; a job whose settings name one of the pool's devices (`device: "cuda:1"`) waits
for that device's worker when the pool has several devices. Cancel is by job id: the worker running the
job stops it at its next step; a queued one is cancelled by the server before any worker takes it.

CPU threads: torch's intra-op thread pool is one per process, so N CPU workers would each ask for every
core. With more than one CPU worker the pool sets `torch.set_num_threads(cores // cpu_workers)` (at least
1) before the workers start; one worker leaves torch's default alone.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable

from shared_protocol.messages import Message

from .runners import JobRunner, resolve_device
from .store import JobStore
from .worker import Worker

log = logging.getLogger(__name__)


def visible_gpus() -> list[str]:
    import torch

    return [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def worker_devices(device: str = "auto", workers: int = 1, devices: list[str] | None = None) -> list[str]:
    """One entry per worker. `devices` (each checked to exist here; `auto` in it: every visible GPU, else
    cpu) or `workers` copies of `device` (left as given: the runner resolves `auto` per job, as with one
    worker). ValueError on a bad combination or a device this machine does not have."""
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, not {workers}")
    if not devices:
        return [device] * workers
    if workers != 1:
        raise ValueError("give either --workers N (N workers on --device) or --devices LIST, not both")
    out: list[str] = []
    for d in devices:
        d = d.strip()
        if not d:
            continue
        if d == "auto":
            out += visible_gpus() or ["cpu"]
        else:
            out.append(resolve_device(d, "cpu"))  # raises for a device not here
    if not out:
        raise ValueError("--devices names no device")
    return out


def runner_for(runner: JobRunner, device: str) -> JobRunner:
    """The worker's own runner for `device` (a runner without `for_device` is shared: it must be
    thread-safe)."""
    for_device = getattr(runner, "for_device", None)
    return runner if for_device is None else for_device(device)


def _is_cpu(device: str) -> bool:
    try:
        return resolve_device("auto", device) == "cpu"
    except ValueError:  # a device not here: its jobs fail at submit, it takes no CPU threads
        return False


def _cpu_threads(devices: list[str]) -> int | None:
    """Threads per CPU worker when several CPU workers share the cores, else None (torch's default)."""
    if len(devices) < 2:
        return None
    cpu = sum(_is_cpu(d) for d in devices)
    return max(1, (os.cpu_count() or 1) // cpu) if cpu >= 2 else None


class WorkerPool:
    def __init__(
        self,
        store: JobStore,
        runner: JobRunner,
        post: Callable[[Message], None],
        devices: list[str],
    ):
        self.store = store
        self.devices = list(devices)
        self.cancelled: set[str] = set()
        """Job ids asked to stop: the worker running one stops at its next step."""
        self._queue: deque[tuple[str, str | None]] = deque()  # (job id, the device it waits for or None)
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self.threads = _cpu_threads(self.devices)
        single = len(self.devices) == 1
        self.workers = [
            Worker(
                store,
                runner if single else runner_for(runner, d),
                post,
                take=self._take,
                cancelled=self.cancelled,
                stopping=self._stopping,
                device=d,
                name="splatbrush-worker" if single else f"splatbrush-worker-{i}",
                threads=self.threads,
            )
            for i, d in enumerate(self.devices)
        ]

    def __len__(self) -> int:
        return len(self.workers)

    def start(self) -> None:
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)
            log.info("%d CPU workers: %d torch threads each", len(self), self.threads)
        for w in self.workers:
            w.start()
        if len(self) > 1:
            log.info("%d workers on %s", len(self), ", ".join(self.devices))

    def _pin(self, job_id: str) -> str | None:
        """The device a job waits for: the one its settings name, when that is one of several here."""
        if len(set(self.devices)) < 2:
            return None
        info = self.store.get(job_id)
        dev = (info.settings.get("device") if info is not None else None) or "auto"
        return dev if dev in self.devices else None

    def enqueue(self, job_id: str) -> None:
        pin = self._pin(job_id)
        with self._cond:
            self._queue.append((job_id, pin))
            self._cond.notify_all()

    def _take(self, worker: Worker) -> str | None:
        """Block until a queued job fits `worker` (it becomes the worker's current job), or None when the
        pool stops."""
        with self._cond:
            while not self._stopping.is_set():
                for i, (job_id, pin) in enumerate(self._queue):
                    if pin is None or pin == worker.device:
                        del self._queue[i]
                        worker.current = job_id
                        return job_id
                self._cond.wait(1.0)
        return None

    def cancel(self, job_id: str) -> None:
        """Stop the job at its next step wherever it runs (queued jobs are cancelled by the server)."""
        self.cancelled.add(job_id)

    def running(self, job_id: str) -> bool:
        """Whether a worker has taken this job."""
        with self._cond:
            return any(w.current == job_id for w in self.workers)

    def stop(self) -> None:
        """Every worker finishes its step, checkpoints and leaves its job queued (it resumes on restart)."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()

    def join(self, timeout: float) -> list[Worker]:
        """Wait up to `timeout` s in all; returns the workers still alive."""
        deadline = time.monotonic() + timeout
        for w in self.workers:
            if w.is_alive():
                w.join(max(0.0, deadline - time.monotonic()))
        return [w for w in self.workers if w.is_alive()]
