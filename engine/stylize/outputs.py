"""Files a stylization job leaves behind, all beside the stylized scene `OUT.ply`:

OUT.ply                the stylized scene (same geometry, new colours)
OUT.contact.png        contact sheet: the style image, then original (top row) vs stylized (bottom row)
                       renders of several views
OUT.losses.png         loss curves (total and every term) over the steps
OUT.report.json        settings, versions, timings, loss history, metrics
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..cameras.camera import Camera
from ..render import render
from ..scene.gaussians import GaussianScene

SUFFIXES = {"contact_sheet": ".contact.png", "loss_curves": ".losses.png", "report": ".report.json"}


def side_paths(out_ply: Path | str) -> dict[str, Path]:
    """Where the side outputs of `out_ply` go: {"scene", "contact_sheet", "loss_curves", "report"}."""
    out = Path(out_ply)
    stem = out.with_suffix("")
    return {"scene": out, **{k: Path(f"{stem}{s}") for k, s in SUFFIXES.items()}}


def _render_uint8(scene: GaussianScene, cam: Camera, backend: str, background) -> np.ndarray:
    with torch.no_grad():
        img = render(scene, cam, background=background, backend=backend).image
    return (img.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def contact_sheet(
    original: GaussianScene,
    stylized: GaussianScene,
    cameras: Sequence[Camera],
    style_image: np.ndarray | None = None,
    n_views: int = 4,
    size: int = 320,
    backend: str = "auto",
    background=(0.0, 0.0, 0.0),
) -> Image.Image:
    """Original (top) vs stylized (bottom) for `n_views` views spread over `cameras`, each rendered with its
    longer side `size` px; the style image (scaled to the same height) in front of both rows."""
    if not cameras:
        raise ValueError("contact_sheet needs at least one camera")
    picks = sorted({round(i * len(cameras) / n_views) % len(cameras) for i in range(n_views)})
    cams = [cameras[i].fit_to(size) for i in picks]
    top = [_render_uint8(original, c, backend, background) for c in cams]
    bottom = [_render_uint8(stylized, c, backend, background) for c in cams]
    h = max(t.shape[0] for t in top)
    gap = 4
    tiles_w = sum(t.shape[1] for t in top) + gap * (len(top) - 1)
    style_tile = None
    if style_image is not None:
        s = Image.fromarray(np.asarray(style_image, dtype=np.uint8))
        sw = max(1, round(s.width * (2 * h + gap) / s.height))
        style_tile = s.resize((sw, 2 * h + gap), Image.LANCZOS)
    left = (style_tile.width + 3 * gap) if style_tile is not None else 0
    sheet = Image.new("RGB", (left + tiles_w, 2 * h + gap), (255, 255, 255))
    if style_tile is not None:
        sheet.paste(style_tile, (0, 0))
    x = left
    for t, b in zip(top, bottom, strict=True):
        sheet.paste(Image.fromarray(t), (x, 0))
        sheet.paste(Image.fromarray(b), (x, h + gap))
        x += t.shape[1] + gap
    draw = ImageDraw.Draw(sheet)
    draw.text((left + 4, 4), "original", fill=(255, 255, 255))
    draw.text((left + 4, h + gap + 4), "stylized", fill=(255, 255, 255))
    return sheet


def loss_curves(history: list[dict[str, float]], path: Path | str, title: str = "stylization losses") -> Path:
    """Plot every logged term over the steps (log scale, moving average over ~2% of the run) to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if history:
        keys = [k for k in history[0] if k != "step"]
        keys += sorted({k for h in history for k in h} - set(keys) - {"step"})
        steps = np.array([h["step"] for h in history])
        win = max(1, len(history) // 50)
        for k in keys:
            vals = np.array([h.get(k, np.nan) for h in history], dtype=np.float64)
            if win > 1 and np.isfinite(vals).all():
                vals = np.convolve(vals, np.ones(win) / win, mode="same")
            ax.plot(steps, vals, label=k, lw=2 if k == "total" else 1)
        positive = all(h.get(k, 1.0) > 0 for h in history for k in keys)
        if positive:
            ax.set_yscale("log")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, Path):
        return str(x)
    return x


def write_report(report: dict[str, Any], path: Path | str) -> Path:
    path = Path(path)
    path.write_text(json.dumps(_jsonable(report), indent=1))
    return path


def write_outputs(
    result,  # StylizeResult
    original: GaussianScene,
    style_image: np.ndarray,
    out_ply: Path | str,
    extra: dict[str, np.ndarray] | None = None,
    sheet_views: int = 4,
    sheet_size: int | None = None,
    backend: str = "auto",
) -> dict[str, Path]:
    """Write the stylized scene and its side outputs (see the module docstring). Returns their paths.
    sheet_size: contact sheet tile size; default twice the optimized render size, at most 320 px."""
    import time

    from ..scene.io import save_scene

    t0 = time.perf_counter()
    paths = side_paths(out_ply)
    paths["scene"].parent.mkdir(parents=True, exist_ok=True)
    save_scene(result.scene, paths["scene"], extra)
    t_scene = time.perf_counter() - t0
    settings = result.report.get("settings", {})
    background = tuple(settings.get("background", (0.0, 0.0, 0.0)))
    if sheet_size is None:
        sheet_size = min(320, 2 * int(settings.get("size", 160)))
    sheet = contact_sheet(
        original, result.scene, result.cameras, style_image, sheet_views, sheet_size, backend, background
    )
    sheet.save(paths["contact_sheet"])
    report = dict(result.report)
    try:
        loss_curves(result.report.get("history", []), paths["loss_curves"])
    except ImportError:  # matplotlib is optional for the engine; the report keeps the numbers
        paths.pop("loss_curves")
        report["notes"] = [*report.get("notes", []), "matplotlib not installed: no loss-curve PNG"]
    report["outputs"] = {k: str(v) for k, v in paths.items()}
    timings = dict(report.get("timings", {}))
    t_all = time.perf_counter() - t0
    for name, seconds in (("write_outputs:scene", t_scene), ("write_outputs", t_all)):
        timings[name] = {"total_s": seconds, "calls": 1, "mean_s": seconds}
    report["timings"] = timings  # the report file itself is written after this
    write_report(report, paths["report"])
    return paths
