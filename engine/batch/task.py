"""One combination, start to finish: load, stylize, thumbnails, metrics. The same function runs in-process
(the local backend) and inside a Ray task, so both give the same bytes for the same seed.

Stylization goes through the public API only: `StylizeConfig.from_preset(preset, **overrides)` and
`stylize(scene, style, cameras, config, callback, should_stop, checkpoint_dir)`.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared_protocol import DEFAULT_PRESET
from shared_protocol.splatfile import SplatArrays, read_splats, write_splats


@dataclass
class ComboTask:
    """Everything a worker needs for one combination (plain data: it travels to Ray workers)."""

    key: str
    asset: str | SplatArrays
    """Path of the asset (io "shared"), or its arrays (io "driver")."""
    style: str | np.ndarray
    """Path of the style image, or the image itself, uint8 [H, W, 3]."""
    settings: dict[str, Any]
    """preset, steps, size, views, seed, device (JobSettings keys; missing ones: the preset's)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Other StylizeConfig fields."""
    fingerprint: str = ""
    output_dir: str | None = None
    """Where `<key>.ply` and the checkpoints go (io "shared"); None: the arrays are returned (io "driver")."""
    thumbnail_size: int = 160
    """Before/after thumbnails in px (0: none)."""
    gpu: bool | None = None
    """Ray tasks: whether Ray gave this task a GPU (device "auto" -> cuda or cpu). None: CUDA if present."""
    threads: int | None = None
    """torch threads for the job (None: leave torch's default)."""


def task_device(task: ComboTask) -> str:
    requested = task.settings.get("device", "auto")
    if requested != "auto":
        if requested.startswith("cuda") and task.gpu is False:
            raise ValueError(
                f"{task.key}: settings ask for device {requested!r} but this Ray task has no GPU; set "
                "[ray] num_gpus (e.g. 1) in the manifest or device = 'auto'"
            )
        return requested
    if task.gpu is None:
        from engine.stylize import resolve_device

        return resolve_device("auto")
    return "cuda" if task.gpu else "cpu"


def node_name() -> str:
    """Host (and Ray node IP when inside Ray) that runs this process."""
    host = socket.gethostname()
    try:
        import ray

        if ray.is_initialized():
            return f"{host} ({ray.util.get_node_ip_address()})"
    except ImportError:
        pass
    return host


def combo_metrics(
    report: dict[str, Any], before: SplatArrays, after: SplatArrays, stylize_s: float
) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in (report.get("metrics") or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
            out[k] = float(v)
    out["stylize_time_s"] = stylize_s
    out["mean_abs_dc_change"] = float(np.abs(after.sh[:, 0] - before.sh[:, 0]).mean())
    return out


def run_combo(task: ComboTask) -> dict[str, Any]:
    """Stylize one combination. Returns {"record": JSON-able dict, "thumbs": {name: PNG bytes},
    "result": SplatArrays or None (None when written to output_dir)}. Raises on failure."""
    import torch

    from engine.imaging import load_image
    from engine.scene.io import scene_from_arrays, scene_to_arrays
    from engine.stylize import StylizeConfig, stylize

    from .summary import thumbnail_png

    t0 = time.perf_counter()
    if task.threads:
        torch.set_num_threads(int(task.threads))
    g = read_splats(task.asset) if isinstance(task.asset, str) else task.asset
    style = load_image(task.style) if isinstance(task.style, str) else np.asarray(task.style)
    device = task_device(task)
    s = task.settings
    config = StylizeConfig.from_preset(
        s.get("preset", DEFAULT_PRESET),
        steps=s.get("steps"),
        size=s.get("size"),
        views=s.get("views"),
        seed=s.get("seed", 0),
        device=device,
        progress_bar=False,
        **task.overrides,
    )
    ckpt = None
    if task.output_dir is not None:  # a retried task resumes from its last checkpoint
        ckpt = Path(task.output_dir) / ".checkpoints" / f"{task.key}-{task.fingerprint[:12]}"
    t1 = time.perf_counter()
    res = stylize(scene_from_arrays(g), style, None, config, None, None, ckpt)
    stylize_s = time.perf_counter() - t1
    out = scene_to_arrays(res.scene, extra=g.extra)
    thumbs: dict[str, bytes] = {}
    if task.thumbnail_size:  # before and after from the same camera: the job's first optimized view
        cam = res.cameras[0].to_dict() if res.cameras else None
        thumb_device = device if device.startswith("cuda") else "cpu"
        for name, arrays in (("before", g), ("after", out)):
            png = thumbnail_png(arrays, task.thumbnail_size, cam, thumb_device)
            if png is not None:
                thumbs[name] = png
    name = f"{task.key}.ply"
    if task.output_dir is not None:
        write_splats(out, Path(task.output_dir) / name)
        if ckpt is not None:
            shutil.rmtree(ckpt, ignore_errors=True)
    record = {
        "state": "done",
        "error": None,
        "fingerprint": task.fingerprint,
        "output": name,
        "metrics": combo_metrics(res.report, g, out, stylize_s),
        "time_s": time.perf_counter() - t0,
        "node": node_name(),
        "device": device,
        "pid": os.getpid(),
        "steps": res.steps_done,
        "resumed": bool((res.report or {}).get("resumed_from")),
        "finished": time.time(),
    }
    record["metrics"]["load_time_s"] = t1 - t0
    return {"record": record, "thumbs": thumbs, "result": None if task.output_dir is not None else out}
