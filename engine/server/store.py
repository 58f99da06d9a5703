"""Job store: every job is a folder under `<state_dir>/jobs/<job id>/` (state dir 0700, files 0600):

    inputs/gaussians.npz   the submitted Gaussians (np.savez, loaded with allow_pickle=False)
    inputs/style.npy       the style image, uint8 [H, W, 3]
    inputs/cameras.json    the cameras (Camera.to_dict() form) or null
    config.json            the job settings + the engine overrides fixed at submit time (+ idempotency key)
    checkpoints/           written by the runner; a resumed job continues from here
    status.json            JobInfo, written last at submit (a folder without it is an orphan) and atomically
    output/gaussians.npz   the result, output/report.json its report

Job ids are generated here (12 hex digits) and validated (fullmatch) before any path is built from one. Every
write goes through `shared_protocol.atomic`; the in-memory state changes only after its write succeeded.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from shared_protocol.atomic import atomic_open, atomic_write_json, remove_partials
from shared_protocol.fields import JOB_ID_RE, TERMINAL_STATES
from shared_protocol.messages import JobInfo, JobSettings, splat_to_arrays
from shared_protocol.splatfile import GAUSSIAN_FIELDS, SplatArrays
from shared_protocol.transfer import layout_of

log = logging.getLogger(__name__)
FILE_MODE = 0o600
DIR_MODE = 0o700
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
TRASH_PREFIX = ".trash-"


class DiskFullError(RuntimeError):
    """The state dir has no room (ENOSPC, EFBIG, EDQUOT): the message says where and how much."""

    code = "disk_full"


class InProgressError(RuntimeError):
    """A retried submit arrived while the first one (same owner and idempotency key) is still being stored."""

    code = "in_progress"


def _disk_full(path: Path, e: OSError, nbytes: int) -> DiskFullError:
    return DiskFullError(
        f"the engine's state dir {path} is full ({e.strerror}) while writing about {nbytes / 1e6:.0f} MB; "
        "free disk space or remove finished jobs (`splatbrush jobs clean`)"
    )


def write_json(path: Path, obj: Any) -> None:
    atomic_write_json(path, obj, mode=FILE_MODE)


def save_arrays(path: Path, g: SplatArrays) -> None:
    arrays = {n: getattr(g, n) for n in GAUSSIAN_FIELDS}
    arrays.update({f"extra.{k}": v for k, v in g.extra.items()})
    with atomic_open(path, mode=FILE_MODE) as f:
        np.savez(f, **arrays)


def load_arrays(path: Path) -> SplatArrays:
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    extra = {k[6:]: v for k, v in data.items() if k.startswith("extra.")}
    return SplatArrays(**{n: data[n] for n in GAUSSIAN_FIELDS}, extra=extra)


def _private_dir(path: Path) -> None:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if os.name == "posix" and (path.stat().st_mode & 0o777) != DIR_MODE:
        os.chmod(path, DIR_MODE)


class JobStore:
    """The jobs of one engine. Thread-safe: the server loop, its IO threads and the worker all use it."""

    def __init__(self, state_dir: str | os.PathLike, max_crash_resumes: int = 1):
        self.root = Path(state_dir).expanduser().resolve()
        self.jobs_dir = self.root / "jobs"
        _private_dir(self.root)
        _private_dir(self.jobs_dir)
        self.max_crash_resumes = max_crash_resumes
        """A job found `running` at start (the engine died under it) resumes this many times, then fails."""
        self._lock = threading.RLock()
        self._jobs: dict[str, JobInfo] = {}
        self._idem: dict[tuple[str, str], str] = {}
        self._last_write: dict[str, float] = {}
        self._load()

    def _load(self) -> None:
        for p in remove_partials(self.root, recursive=True):
            log.info("removed %s (a write interrupted by a crash)", p)
        for d in sorted(self.jobs_dir.iterdir()):
            if d.name.startswith(TRASH_PREFIX):
                shutil.rmtree(d, ignore_errors=True)  # a clean interrupted half-way
                continue
            if not d.is_dir() or not JOB_ID_RE.fullmatch(d.name):
                continue
            status = d / "status.json"
            if not status.exists():
                log.warning("removing orphan job folder %s (its submit never finished)", d)
                shutil.rmtree(d, ignore_errors=True)
                continue
            try:
                info = JobInfo.from_dict(json.loads(status.read_text()))
            except (OSError, ValueError) as e:
                log.warning("skipping job folder %s: unreadable status.json (%s)", d, e)
                continue
            if info.id != d.name:
                log.warning("skipping job folder %s: its status.json names job %s", d, info.id)
                continue
            self._jobs[info.id] = info
            key = self._read_key(d)
            if key:
                self._idem[(info.owner, key)] = info.id

    @staticmethod
    def _read_key(d: Path) -> str | None:
        try:
            return json.loads((d / "config.json").read_text()).get("idempotency_key")
        except (OSError, ValueError, AttributeError):
            return None

    # -------------------------------------------------------------------------------------- paths
    def job_dir(self, job_id: str) -> Path:
        if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
            raise ValueError(f"{job_id!r:.40} is not a job id (12 lowercase hex digits)")
        return self.jobs_dir / job_id

    def checkpoint_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "checkpoints"

    # -------------------------------------------------------------------------------------- jobs
    def find(self, owner: str, idempotency_key: str | None) -> JobInfo | None:
        """The job `owner` already submitted with this idempotency key (a retried submit), or None."""
        if not idempotency_key:
            return None
        with self._lock:
            job_id = self._idem.get((owner, idempotency_key))
            return self.get(job_id) if job_id else None

    def storing(self, owner: str, idempotency_key: str | None) -> bool:
        """Whether a submit with this key is being stored right now (reserved, not a job yet)."""
        with self._lock:
            return (
                bool(idempotency_key)
                and (owner, idempotency_key) in self._idem
                and self.find(owner, idempotency_key) is None
            )

    def create(
        self,
        gaussians: SplatArrays,
        style_image: np.ndarray,
        cameras: list[dict[str, Any]] | None,
        settings: JobSettings,
        overrides: dict[str, Any],
        name: str = "",
        owner: str = "",
        idempotency_key: str | None = None,
        total_steps: int | None = None,
    ) -> tuple[JobInfo, bool]:
        """Persist a new job's inputs, then its status (queued): a crash in between leaves an orphan folder
        that the next start removes, never a job. Returns (info, created); created is False when `owner`
        already submitted `idempotency_key` (the earlier job is returned). DiskFullError when the disk is
        full."""
        with self._lock:
            existing = self.find(owner, idempotency_key)
            if existing is not None:
                return existing, False
            if idempotency_key and (owner, idempotency_key) in self._idem:
                raise InProgressError(
                    "a submit with this idempotency key is still being stored; retry in a moment"
                )
            job_id = secrets.token_hex(6)
            while job_id in self._jobs or self.job_dir(job_id).exists():
                job_id = secrets.token_hex(6)
            d = self.job_dir(job_id)
            d.mkdir(mode=DIR_MODE)
            (d / "inputs").mkdir(mode=DIR_MODE)
            if idempotency_key:
                self._idem[(owner, idempotency_key)] = job_id  # reserved while the inputs are written
        info = JobInfo(
            id=job_id,
            state="queued",
            total_steps=total_steps if total_steps is not None else settings.steps or 0,
            name=name,
            created=time.time(),
            num_gaussians=gaussians.num_gaussians,
            settings=settings.to_dict(),
            owner=owner,
        )
        config = {"settings": settings.to_dict(), "overrides": overrides, "idempotency_key": idempotency_key}
        try:
            save_arrays(d / "inputs" / "gaussians.npz", gaussians)
            with atomic_open(d / "inputs" / "style.npy", mode=FILE_MODE) as f:
                np.save(f, np.ascontiguousarray(style_image, np.uint8), allow_pickle=False)
            write_json(d / "inputs" / "cameras.json", cameras)
            write_json(d / "config.json", config)
            write_json(d / "status.json", info.to_dict())
        except BaseException as e:
            shutil.rmtree(d, ignore_errors=True)
            with self._lock:
                self._idem.pop((owner, idempotency_key or ""), None)
            if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
                nbytes = sum(np.asarray(getattr(gaussians, n)).nbytes for n in GAUSSIAN_FIELDS)
                raise _disk_full(self.root, e, nbytes + style_image.nbytes) from None
            raise
        with self._lock:
            self._jobs[job_id] = info
            self._last_write[job_id] = time.monotonic()
        return self.get(job_id), True  # type: ignore[return-value]

    def inputs(self, job_id: str) -> tuple[SplatArrays, np.ndarray, list[dict] | None, dict[str, Any]]:
        d = self.job_dir(job_id)
        g = load_arrays(d / "inputs" / "gaussians.npz")
        style = np.load(d / "inputs" / "style.npy", allow_pickle=False)
        cameras = json.loads((d / "inputs" / "cameras.json").read_text())
        config = json.loads((d / "config.json").read_text())
        return g, style, cameras, config

    def get(self, job_id: str) -> JobInfo | None:
        with self._lock:
            info = self._jobs.get(job_id)
            return None if info is None else JobInfo.from_dict(info.to_dict())  # a copy

    def all(self, owner: str | None = None) -> list[JobInfo]:
        """Every job (owner None) or the jobs of one owner, oldest first."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if owner is None or j.owner == owner]
            return sorted((JobInfo.from_dict(j.to_dict()) for j in jobs), key=lambda j: j.created)

    def update(self, job_id: str, force_write: bool = True, **changes: Any) -> JobInfo:
        """Change fields of a job. status.json is rewritten on state changes and at most every 0.5 s else; the
        job changes in memory only once that write succeeded (a failed write raises and changes nothing)."""
        with self._lock:
            old = self._jobs[job_id]
            new = JobInfo.from_dict({**old.to_dict(), **changes})
            state_changed = new.state != old.state
            now = time.monotonic()
            if force_write or state_changed or now - self._last_write.get(job_id, 0.0) > 0.5:
                self._write_status(new)
            self._jobs[job_id] = new
            return JobInfo.from_dict(new.to_dict())

    def _write_status(self, info: JobInfo) -> None:
        path = self.job_dir(info.id) / "status.json"
        try:
            write_json(path, info.to_dict())
        except OSError as e:
            if e.errno in DISK_FULL_ERRNOS:
                raise _disk_full(self.root, e, 4096) from None
            raise
        self._last_write[info.id] = time.monotonic()

    def save_output(self, job_id: str, g: SplatArrays, report: dict[str, Any]) -> None:
        out = self.job_dir(job_id) / "output"
        try:
            out.mkdir(mode=DIR_MODE, exist_ok=True)
            save_arrays(out / "gaussians.npz", g)
            write_json(out / "report.json", report)
        except OSError as e:
            if e.errno in DISK_FULL_ERRNOS:
                raise _disk_full(self.root, e, sum(getattr(g, n).nbytes for n in GAUSSIAN_FIELDS)) from None
            raise

    def output(self, job_id: str) -> tuple[SplatArrays, dict[str, Any]]:
        out = self.job_dir(job_id) / "output"
        return load_arrays(out / "gaussians.npz"), json.loads((out / "report.json").read_text())

    def flat_output(self, job_id: str) -> tuple[Path, list[dict[str, Any]], int, dict[str, Any]]:
        """(path, layout, nbytes, report) of the result as raw arrays back to back (`output/result.bin`,
        written from gaussians.npz on the first chunked download), for reading in chunks."""
        out = self.job_dir(job_id) / "output"
        flat, meta = out / "result.bin", out / "result.json"
        try:
            info = json.loads(meta.read_text())
            layout, nbytes = info["arrays"], int(info["nbytes"])
            if flat.stat().st_size != nbytes:
                raise ValueError("result.bin has the wrong size")
        except (OSError, ValueError, KeyError, TypeError):
            g, _ = self.output(job_id)
            arrays = splat_to_arrays(g)
            layout = layout_of(arrays)
            nbytes = sum(a.nbytes for a in arrays.values())
            with atomic_open(flat, mode=FILE_MODE) as f:
                for a in arrays.values():
                    f.write(memoryview(np.ascontiguousarray(a)).cast("B"))
            write_json(meta, {"arrays": layout, "nbytes": nbytes})
        return flat, layout, nbytes, json.loads((out / "report.json").read_text())

    def remove(self, job_id: str) -> bool:
        """Delete a finished job's folder (renamed away first, so a half-done delete never looks like a job).
        Refuses queued/running jobs."""
        with self._lock:
            info = self._jobs.get(job_id)
            if info is None or info.state not in TERMINAL_STATES:
                return False
            trash = self.jobs_dir / f"{TRASH_PREFIX}{job_id}-{secrets.token_hex(3)}"
            os.replace(self.job_dir(job_id), trash)
            del self._jobs[job_id]
            self._idem = {k: v for k, v in self._idem.items() if v != job_id}
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def recover(self) -> list[str]:
        """After a (re)start: jobs the engine died under (`running`) go back to queued and resume from their
        checkpoint, up to `max_crash_resumes` times; a job that brought the engine down more often than that
        fails with that reason. Returns the ids to run, oldest first."""
        todo = []
        with self._lock:
            for info in sorted(self._jobs.values(), key=lambda j: j.created):
                if info.state == "running" and info.resumes >= self.max_crash_resumes:
                    self.update(
                        info.id,
                        state="failed",
                        finished=time.time(),
                        phase="failed",
                        error=f"the engine stopped {info.resumes + 1} times while running this job (crash, "
                        "kill -9 or out of memory), so it is not resumed again; resubmit it with smaller "
                        "settings (size, views, Gaussians)",
                    )
                    continue
                if info.state == "running":
                    info = self.update(info.id, state="queued", resumes=info.resumes + 1)
                if info.state == "queued":
                    todo.append(info.id)
        return todo

    def counts(self, owner: str | None = None) -> dict[str, int]:
        with self._lock:
            out: dict[str, int] = {}
            for j in self._jobs.values():
                if owner is None or j.owner == owner:
                    out[j.state] = out.get(j.state, 0) + 1
            return out
