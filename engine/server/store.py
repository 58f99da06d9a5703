"""Job store: every job is a folder under `<state_dir>/jobs/<job id>/`:

    inputs/gaussians.npz   the submitted Gaussians (np.savez, loaded with allow_pickle=False)
    inputs/style.npy       the style image, uint8 [H, W, 3]
    inputs/cameras.json    the cameras (Camera.to_dict() form) or null
    config.json            the job settings + the engine overrides fixed at submit time
    checkpoints/           written by the runner; a resumed job continues from here
    status.json            JobInfo (written atomically)
    output/gaussians.npz   the result, output/report.json its report

Job ids are generated here (12 hex digits) and validated before any path is built from one.
"""

from __future__ import annotations

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

from shared_protocol.fields import JOB_ID_RE, TERMINAL_STATES
from shared_protocol.messages import JobInfo, JobSettings
from shared_protocol.splatfile import GAUSSIAN_FIELDS, SplatArrays

log = logging.getLogger(__name__)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    _atomic_write(path, json.dumps(obj, indent=1, allow_nan=False).encode())


def save_arrays(path: Path, g: SplatArrays) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    arrays = {n: getattr(g, n) for n in GAUSSIAN_FIELDS}
    arrays.update({f"extra.{k}": v for k, v in g.extra.items()})
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_arrays(path: Path) -> SplatArrays:
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    extra = {k[6:]: v for k, v in data.items() if k.startswith("extra.")}
    return SplatArrays(**{n: data[n] for n in GAUSSIAN_FIELDS}, extra=extra)


class JobStore:
    """The jobs of one engine. Thread-safe: the server loop and the worker both use it."""

    def __init__(self, state_dir: str | os.PathLike):
        self.root = Path(state_dir).expanduser().resolve()
        self.jobs_dir = self.root / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._jobs: dict[str, JobInfo] = {}
        self._last_write: dict[str, float] = {}
        for d in sorted(self.jobs_dir.iterdir()):
            if not d.is_dir() or not JOB_ID_RE.fullmatch(d.name):
                continue
            try:
                info = JobInfo.from_dict(json.loads((d / "status.json").read_text()))
            except (OSError, ValueError) as e:
                log.warning("skipping job folder %s: unreadable status.json (%s)", d, e)
                continue
            if info.id != d.name:
                log.warning("skipping job folder %s: its status.json names job %s", d, info.id)
                continue
            self._jobs[info.id] = info

    # -------------------------------------------------------------------------------------- paths
    def job_dir(self, job_id: str) -> Path:
        if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
            raise ValueError(f"{job_id!r:.40} is not a job id (12 lowercase hex digits)")
        return self.jobs_dir / job_id

    def checkpoint_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "checkpoints"

    # -------------------------------------------------------------------------------------- jobs
    def create(
        self,
        gaussians: SplatArrays,
        style_image: np.ndarray,
        cameras: list[dict[str, Any]] | None,
        settings: JobSettings,
        overrides: dict[str, Any],
        name: str = "",
    ) -> JobInfo:
        """Persist a new job's inputs, then its status (queued): a crash in between leaves no job."""
        with self._lock:
            job_id = secrets.token_hex(6)
            while job_id in self._jobs or self.job_dir(job_id).exists():
                job_id = secrets.token_hex(6)
            d = self.job_dir(job_id)
            (d / "inputs").mkdir(parents=True)
        save_arrays(d / "inputs" / "gaussians.npz", gaussians)
        np.save(d / "inputs" / "style.npy", np.ascontiguousarray(style_image, np.uint8), allow_pickle=False)
        write_json(d / "inputs" / "cameras.json", cameras)
        write_json(d / "config.json", {"settings": settings.to_dict(), "overrides": overrides})
        info = JobInfo(
            id=job_id,
            state="queued",
            total_steps=settings.steps or 0,
            name=name,
            created=time.time(),
            num_gaussians=gaussians.num_gaussians,
            settings=settings.to_dict(),
        )
        with self._lock:
            self._jobs[job_id] = info
            self._write_status(info)
        return info

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

    def all(self) -> list[JobInfo]:
        with self._lock:
            return sorted(
                (JobInfo.from_dict(j.to_dict()) for j in self._jobs.values()), key=lambda j: j.created
            )

    def update(self, job_id: str, force_write: bool = True, **changes: Any) -> JobInfo:
        """Change fields of a job; status.json is rewritten on state changes and at most every 0.5 s else."""
        with self._lock:
            info = self._jobs[job_id]
            state_changed = "state" in changes and changes["state"] != info.state
            for k, v in changes.items():
                setattr(info, k, v)
            now = time.monotonic()
            if force_write or state_changed or now - self._last_write.get(job_id, 0.0) > 0.5:
                self._write_status(info)
            return JobInfo.from_dict(info.to_dict())

    def _write_status(self, info: JobInfo) -> None:
        write_json(self.job_dir(info.id) / "status.json", info.to_dict())
        self._last_write[info.id] = time.monotonic()

    def save_output(self, job_id: str, g: SplatArrays, report: dict[str, Any]) -> None:
        out = self.job_dir(job_id) / "output"
        out.mkdir(exist_ok=True)
        save_arrays(out / "gaussians.npz", g)
        write_json(out / "report.json", report)

    def output(self, job_id: str) -> tuple[SplatArrays, dict[str, Any]]:
        out = self.job_dir(job_id) / "output"
        return load_arrays(out / "gaussians.npz"), json.loads((out / "report.json").read_text())

    def remove(self, job_id: str) -> bool:
        """Delete a finished job's folder. Refuses queued/running jobs."""
        with self._lock:
            info = self._jobs.get(job_id)
            if info is None or info.state not in TERMINAL_STATES:
                return False
            del self._jobs[job_id]
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        return True

    def recover(self) -> list[str]:
        """After a (re)start: running jobs go back to queued (they resume from their checkpoint). Returns the
        ids to run, oldest first."""
        todo = []
        with self._lock:
            for info in sorted(self._jobs.values(), key=lambda j: j.created):
                if info.state == "running":
                    info.state = "queued"
                    info.resumes += 1
                    self._write_status(info)
                if info.state == "queued":
                    todo.append(info.id)
        return todo

    def counts(self) -> dict[str, int]:
        with self._lock:
            out: dict[str, int] = {}
            for j in self._jobs.values():
                out[j.state] = out.get(j.state, 0) + 1
            return out
