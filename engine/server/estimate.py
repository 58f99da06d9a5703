"""What a job will need, estimated at submit from its settings, so that a job that cannot fit the machine is
refused with the numbers instead of taking the engine down later (issue 11: views=1024 at size=4096 would
pre-render ~1.6 TB of views before its first step).

The model is deliberately simple and errs high: per prepared view, the original render, alpha mask and RGB
target (16 B/px) plus the colour cache's (pixel, Gaussian) pairs (~16 per pixel, 16 B each); per Gaussian,
its parameters with gradient and Adam state, plus the job's working copies of it (the loaded scene, the
colour cache's per-Gaussian tables, the palette finish's colours, the written outputs); a fixed allowance
for the renderer and guidance. The time
model is calibrated on this project's CPU timings (fast preset, donut: ~34 s); it only catches absurd jobs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

BYTES_PER_VIEW_PIXEL = 16 + 16 * 16
"""originals [3] + mask [1] + targets... (float32) + colour-cache pairs (16 per pixel x 16 B)."""
BYTES_PER_GAUSSIAN_COEFF = 4 * 4
"""float32 parameter + gradient + Adam m and v."""
BYTES_PER_GAUSSIAN = 640
"""The job's working copies per Gaussian, whatever its SH degree. Measured with the default preset on donut
replicas (SH0, benchmarks/bench_scale.py): peak RSS grows 833 B per Gaussian from 1.2M to 2.4M, against
17 x 16 = 272 B for the parameters alone; 640 + 272 = 912 B keeps the estimate above it."""
BASE_BYTES = 2**30
"""Renderer workspace, torch and the guidance modules beyond the views and Gaussians (the same replicas: the
peak RSS extrapolates to 1.19 GB at no Gaussians, of which the 12 views' share is 0.21 GB here)."""
SECONDS_PER_PIXEL_STEP = {"cpu": 2e-6, "cuda": 5e-8, "mps": 2e-7}
SECONDS_PER_GAUSSIAN_STEP = {"cpu": 1e-6, "cuda": 2e-8, "mps": 1e-7}


@dataclass
class JobEstimate:
    memory_bytes: int
    seconds: float
    detail: str
    """How the numbers came about, for the refusal message and the log."""
    device: str = "cpu"
    """Where the memory is needed."""


def estimate_job(
    steps: int,
    size: int,
    views: int,
    views_per_step: int,
    num_gaussians: int,
    sh_coeffs: int,
    cameras: list[dict[str, Any]] | None,
    device: str,
) -> JobEstimate:
    """Memory (bytes, on `device`) and wall time (s) of a stylization job. Cameras are fitted to `size` on
    their longer side, generated views are size x size."""
    if cameras:
        pixels = [
            round(c["width"] * size / max(c["width"], c["height"]))
            * round(c["height"] * size / max(c["width"], c["height"]))
            for c in cameras
        ]
    else:
        pixels = [size * size] * views
    view_px = sum(pixels)
    px_per_step = max(pixels) * max(1, views_per_step)
    coeffs = num_gaussians * (sh_coeffs * 3 + 14)
    memory = (
        BASE_BYTES
        + view_px * BYTES_PER_VIEW_PIXEL
        + coeffs * BYTES_PER_GAUSSIAN_COEFF
        + num_gaussians * BYTES_PER_GAUSSIAN
    )
    kind = device.split(":")[0] if device.split(":")[0] in SECONDS_PER_PIXEL_STEP else "cpu"
    per_step = px_per_step * SECONDS_PER_PIXEL_STEP[kind] + num_gaussians * SECONDS_PER_GAUSSIAN_STEP[kind]
    prepare = len(pixels) * (max(pixels) * SECONDS_PER_PIXEL_STEP[kind] * 4)
    seconds = 5.0 + prepare + steps * per_step
    detail = (
        f"{len(pixels)} views of up to {max(pixels)} px ({view_px / 1e6:.1f} Mpx prepared), "
        f"{num_gaussians} Gaussians, {steps} steps on {device}"
    )
    return JobEstimate(int(memory), float(seconds), detail, device)


def device_memory(device: str) -> int | None:
    """Bytes a job may use on `device`: the GPU's total memory for CUDA, physical RAM for the CPU (None when
    unknown)."""
    if device.startswith("cuda"):
        try:
            import torch

            idx = int(device.split(":")[1]) if ":" in device else 0
            return int(torch.cuda.get_device_properties(idx).total_memory)
        except (ImportError, RuntimeError, AssertionError, ValueError):
            return None
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"
