"""The one progress event of Splatbrush, from the optimization loop to the wire to the add-on.

    engine.stylize.loop  -> emits ProgressEvent(step, total_steps, phase, losses, preview, elapsed_s)
    engine.server.worker -> stamps job_id/state, sends it as `progress` (+ `preview` when it has an image)
    shared_protocol.client -> rebuilds a ProgressEvent from each `progress` / `preview` message
    blender_addon        -> reads the same fields

Pure Python + numpy: no zmq, no torch, so the loop, the engine and Blender all import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

TERMINAL_STATES = ("done", "failed", "cancelled")
MAX_PHASE_CHARS = 64
MAX_LOSSES = 64
MAX_MESSAGE_CHARS = 4096


@dataclass
class ProgressEvent:
    """Where a stylization job is. The first six fields are what the loop knows; the rest are filled in by
    the engine (job_id, state, message) before the event leaves it."""

    step: int
    """Optimizer steps done so far (0 before the first one)."""
    total_steps: int
    """Steps the job runs in all (0 when not known yet)."""
    phase: str = ""
    """What the job is doing: "preparing", "views 3/12", "optimize", "done", ... (at most 64 chars)."""
    losses: dict[str, float] = field(default_factory=dict)
    """Latest loss terms, name -> value (finite floats only on the wire)."""
    preview: np.ndarray | None = None
    """uint8 [H, W, 3] preview render, on some steps only."""
    elapsed_s: float = 0.0
    """Seconds since the job (this run of it) started."""
    job_id: str = ""
    """The engine's job id (12 hex digits); empty inside the loop."""
    state: str = "running"
    """queued | running | done | failed | cancelled."""
    message: str = ""
    """Error text for failed jobs, else a free note."""

    @property
    def kind(self) -> str:
        """ "preview" when the event carries an image, else "progress"."""
        return "preview" if self.preview is not None else "progress"

    @property
    def finished(self) -> bool:
        """True once the job is done, failed or cancelled (no more events follow)."""
        return self.state in TERMINAL_STATES

    @property
    def fraction(self) -> float:
        """step / total_steps in [0, 1] (0 when total_steps is unknown)."""
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    def wire_safe(self, **changes: Any) -> ProgressEvent:
        """A copy the wire accepts: ints, phase/message clipped, at most 64 finite losses (others dropped),
        preview as contiguous uint8 [H, W, 3] (or None). `changes` are applied first (e.g. job_id=...)."""
        ev = replace(self, **changes)
        losses = {}
        for k, v in list(ev.losses.items()):
            if len(losses) >= MAX_LOSSES:
                break
            try:
                f = float(v)
            except (TypeError, ValueError):
                continue
            if math.isfinite(f):
                losses[str(k)[:MAX_PHASE_CHARS]] = f
        preview = ev.preview
        if preview is not None:
            preview = np.asarray(preview)
            if preview.dtype != np.uint8 or preview.ndim != 3 or preview.shape[2] != 3 or not preview.size:
                preview = None
            else:
                preview = np.ascontiguousarray(preview)
        elapsed = float(ev.elapsed_s) if math.isfinite(float(ev.elapsed_s)) else 0.0
        return replace(
            ev,
            step=max(0, int(ev.step)),
            total_steps=max(0, int(ev.total_steps)),
            phase=str(ev.phase)[:MAX_PHASE_CHARS],
            losses=losses,
            preview=preview,
            elapsed_s=max(0.0, elapsed),
            message=str(ev.message)[:MAX_MESSAGE_CHARS],
        )


__all__ = ["TERMINAL_STATES", "ProgressEvent"]
