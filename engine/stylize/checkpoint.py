"""Checkpoints of a stylization job: the colours being optimized, the optimizer, the RNG and the history.

One file, `checkpoint.pt`, in the job's checkpoint directory, written atomically (temp file + rename).
A checkpoint is only resumed when it belongs to the same scene geometry, style image and settings
(fingerprints); otherwise loading fails with a message saying what differs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..scene.gaussians import GaussianScene

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1
# settings that do not change the optimization path (may differ between the run and its resume)
IGNORED_SETTINGS = ("progress_bar", "preview_every", "checkpoint_every", "final_metrics", "preset")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used for this job; the message says why and what to do."""


def scene_fingerprint(scene: GaussianScene) -> str:
    h = hashlib.sha256()
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        t = getattr(scene, name).detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def image_fingerprint(image: np.ndarray) -> str:
    a = np.ascontiguousarray(image)
    return hashlib.sha256(str(a.shape).encode() + a.tobytes()).hexdigest()


def settings_fingerprint(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in IGNORED_SETTINGS}


def checkpoint_path(directory: Path | str) -> Path:
    return Path(directory) / CHECKPOINT_NAME


def save_checkpoint(directory: Path | str, state: dict[str, Any]) -> Path:
    """Write `state` (tensors, dicts, lists) to `directory/checkpoint.pt` atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(directory)
    tmp = path.with_suffix(".pt.tmp")
    torch.save({"format_version": FORMAT_VERSION, **state}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(directory: Path | str, expect: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint in `directory`, or None when there is none. `expect` maps fingerprint keys
    ("scene", "style", "settings") to the values of this job; a mismatch raises CheckpointError."""
    path = checkpoint_path(directory)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file: say which
        raise CheckpointError(f"cannot read checkpoint {path}: {e}; delete it to start over") from e
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {state.get('format_version')!r}, expected "
            f"{FORMAT_VERSION}; delete it to start over"
        )
    for key, value in expect.items():
        if state.get(key) != value:
            what = key
            if key == "settings" and isinstance(value, dict) and isinstance(state.get(key), dict):
                diff = sorted(k for k in set(value) | set(state[key]) if value.get(k) != state[key].get(k))
                what = f"settings ({', '.join(diff)})"
            raise CheckpointError(
                f"checkpoint {path} belongs to a different job: its {what} differ; use the "
                f"same scene, style and settings to resume, or another checkpoint directory"
            )
    return state
