"""Thumbnails and the HTML summary of a batch (`<output>/index.html`), the same for every backend.

A row per combination: asset, style (thumbnail), settings, before/after thumbnails from the same camera, state
(with the error), every metric any combination reported, the time it took, the node that ran it, the output.
"""

from __future__ import annotations

import html
import io
import sys
import time
from pathlib import Path
from typing import Any

from shared_protocol.atomic import atomic_write_bytes, atomic_write_text
from shared_protocol.splatfile import SplatArrays

from .manifest import Manifest, slug, stem


def thumbnail_png(
    g: SplatArrays, size: int, camera: dict[str, Any] | None = None, device: str = "cpu"
) -> bytes | None:
    """One view of the scene as PNG bytes: `camera` (Camera.to_dict form, e.g. the job's first view) fitted
    to `size` px, or an orbit view. None if rendering failed (a thumbnail is a nicety; the batch goes on)."""
    try:
        from PIL import Image

        from engine.cameras import Camera
        from engine.cameras.orbit import orbit_cameras
        from engine.imaging import to_uint8
        from engine.render import render
        from engine.scene.io import scene_from_arrays

        scene = scene_from_arrays(g, device=device)
        if camera is not None:
            cam = Camera.from_dict(camera).fit_to(size)
        else:
            cam = orbit_cameras(scene, 1, size, size, elevation_deg=(20.0,))[0]
        buf = io.BytesIO()
        Image.fromarray(to_uint8(render(scene, cam).image), mode="RGB").save(buf, format="PNG")
        return buf.getvalue()
    except Exception as e:  # any failure of an optional picture is reported, never fatal
        print(f"batch: no thumbnail: {type(e).__name__}: {e}", file=sys.stderr)
        return None


def render_thumbnail(g: SplatArrays, size: int, path: Path, camera: dict[str, Any] | None = None) -> bool:
    """`thumbnail_png` written to `path`; False if rendering failed."""
    data = thumbnail_png(g, size, camera)
    if data is None:
        return False
    atomic_write_bytes(path, data, fsync=False)
    return True


def style_thumbnail(src: Path, size: int, path: Path) -> bool:
    try:
        from PIL import Image

        with Image.open(src) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
        atomic_write_bytes(path, buf.getvalue(), fsync=False)
        return True
    except OSError as e:
        print(f"batch: no thumbnail for {src}: {e}", file=sys.stderr)
        return False


def style_thumb_name(style: Path) -> str:
    return f"thumbs/{slug(stem(style))}.style.png"


def _cells(manifest: Manifest, c, st: dict[str, Any], metric_names: list[str]) -> list[str]:
    out = manifest.output

    def img(rel: str, alt: str) -> str:
        return f'<img src="{html.escape(rel)}" alt="{html.escape(alt)}">' if (out / rel).is_file() else "-"

    metrics = st.get("metrics") or {}
    seconds = st.get("time_s", metrics.get("wall_time_s"))
    return [
        html.escape(stem(c.asset)),
        img(style_thumb_name(c.style), "style") + "<br>" + html.escape(stem(c.style)),
        html.escape(c.settings_name),
        img(f"thumbs/{c.key}.before.png", "before"),
        img(f"thumbs/{c.key}.after.png", "after"),
        html.escape(st.get("state", "not run"))
        + (f"<br><small>{html.escape(str(st['error']))}</small>" if st.get("error") else ""),
        *[f"{metrics[m]:.4g}" if isinstance(metrics.get(m), (int, float)) else "-" for m in metric_names],
        f"{seconds:.1f}" if isinstance(seconds, (int, float)) else "-",
        html.escape(str(st.get("node") or "-")),
        (
            f'<a href="{html.escape(st["output"])}">{html.escape(st["output"])}</a>'
            if st.get("output")
            else "-"
        ),
        html.escape(str(st.get("job_id") or "")),
    ]


def write_summary(manifest: Manifest, state: dict[str, dict[str, Any]], backend: str = "") -> Path:
    """`<output>/index.html` from the per-combination records (`state`: combination key -> record)."""
    out = manifest.output
    combos = manifest.combos()
    metric_names = sorted({k for st in state.values() for k in (st.get("metrics") or {})})
    rows = [
        "<tr>"
        + "".join(f"<td>{x}</td>" for x in _cells(manifest, c, state.get(c.key, {}), metric_names))
        + "</tr>"
        for c in combos
    ]
    heads = ["asset", "style", "settings", "before", "after", "state", *metric_names]
    heads += ["time (s)", "node", "output", "job"]
    done = sum(1 for c in combos if state.get(c.key, {}).get("state") == "done")
    via = f" through {html.escape(backend)}" if backend else ""
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Splatbrush batch: {html.escape(manifest.path.name)}</title>
<style>body{{font-family:sans-serif}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;
padding:4px;text-align:center;vertical-align:middle}} img{{max-width:160px}}</style></head><body>
<h1>Splatbrush batch: {html.escape(manifest.path.name)}</h1>
<p>{done} of {len(combos)} done{via};
written {time.strftime("%Y-%m-%d %H:%M:%S")}</p>
<table><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in heads)}</tr>
{chr(10).join(rows)}
</table></body></html>
"""
    path = out / "index.html"
    atomic_write_text(path, page, fsync=False)
    return path
