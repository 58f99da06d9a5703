"""Batch runs: assets x styles (x settings) through an engine, resumable, with an HTML summary.

Manifest (TOML; relative paths are relative to the manifest):

    output = "batch_out"                 # folder for results, thumbnails, state and index.html
    address = "tcp://127.0.0.1:5557"     # optional; `--address` on the command line wins
    assets = ["scenes/donut.ply", "scenes/guitar.compressed.ply"]
    styles = ["styles/starry.jpg", "styles/wave.jpg"]

    [[settings]]                         # optional, repeatable; default: one entry with preset "fast"
    name = "quick"                       # label used in file names (default: the preset)
    preset = "preview"
    steps = 60                           # also size, views, seed, device

Every combination becomes one job. `<output>/batch_state.json` records each job id and outcome after every
change, so running the same manifest again skips finished combinations, re-attaches to jobs the engine is
still running, and resubmits those the engine lost.
"""

from __future__ import annotations

import html
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared_protocol.client import EngineClient
from shared_protocol.errors import EngineError, RemoteError
from shared_protocol.messages import JobSettings
from shared_protocol.splatfile import SplatArrays, read_splats, write_splats

SETTING_KEYS = {"name", "preset", "steps", "size", "views", "seed", "device"}


class ManifestError(ValueError):
    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {problem}")


@dataclass
class Combo:
    key: str
    asset: Path
    style: Path
    settings_name: str
    settings: dict[str, Any]


@dataclass
class Manifest:
    path: Path
    output: Path
    address: str | None
    assets: list[Path]
    styles: list[Path]
    settings: list[dict[str, Any]] = field(default_factory=list)

    def combos(self) -> list[Combo]:
        out = []
        for a in self.assets:
            for s in self.styles:
                for st in self.settings:
                    name = st.get("name") or st.get("preset", "fast")
                    key = "__".join(_slug(x) for x in (_stem(a), _stem(s), name))
                    out.append(Combo(key, a, s, name, {k: v for k, v in st.items() if k != "name"}))
        keys = [c.key for c in out]
        if len(set(keys)) != len(keys):
            raise ManifestError(
                self.path, "two combinations get the same name; give settings distinct `name`s"
            )
        return out


def _stem(p: Path) -> str:
    name = p.name
    for suffix in (".compressed.ply", ".ply", ".splat", ".jpg", ".jpeg", ".png"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return p.stem


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", s).strip("-")[:60] or "x"


def load_manifest(path: str | Path) -> Manifest:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(path, "manifest not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(path, f"not valid TOML: {e}") from None
    unknown = set(data) - {"output", "address", "assets", "styles", "settings"}
    if unknown:
        raise ManifestError(path, f"unknown key(s) {sorted(unknown)}")
    base = path.parent

    def paths(key: str) -> list[Path]:
        v = data.get(key)
        if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
            raise ManifestError(path, f"`{key}` must be a non-empty list of file paths")
        out = [(base / x) if not Path(x).is_absolute() else Path(x) for x in v]
        missing = [str(p) for p in out if not p.is_file()]
        if missing:
            raise ManifestError(path, f"`{key}`: file(s) not found: {', '.join(missing)}")
        return out

    settings = data.get("settings", [{"preset": "fast"}])
    if not isinstance(settings, list) or not all(isinstance(s, dict) for s in settings) or not settings:
        raise ManifestError(path, "`settings` must be a list of tables ([[settings]])")
    for i, s in enumerate(settings):
        bad = set(s) - SETTING_KEYS
        if bad:
            raise ManifestError(
                path, f"settings[{i}]: unknown key(s) {sorted(bad)} (known: {sorted(SETTING_KEYS)})"
            )
        try:
            JobSettings.from_dict({k: v for k, v in s.items() if k != "name"}, f"settings[{i}]")
        except ValueError as e:
            raise ManifestError(path, str(e)) from None
    output = data.get("output", "batch_out")
    if not isinstance(output, str):
        raise ManifestError(path, "`output` must be a folder path")
    address = data.get("address")
    if address is not None and not isinstance(address, str):
        raise ManifestError(path, "`address` must be a string like tcp://127.0.0.1:5557")
    return Manifest(path, base / output, address, paths("assets"), paths("styles"), settings)


# ------------------------------------------------------------------------------------------------ thumbnails
def render_thumbnail(g: SplatArrays, size: int, path: Path, camera: dict[str, Any] | None = None) -> bool:
    """One view of the scene: `camera` (Camera.to_dict form; the job's first view) or an orbit view.
    False if rendering failed."""
    try:
        from engine.cameras import Camera
        from engine.cameras.orbit import orbit_cameras
        from engine.imaging import save_png
        from engine.render import render
        from engine.scene.io import scene_from_arrays

        scene = scene_from_arrays(g)
        if camera is not None:
            cam = Camera.from_dict(camera).fit_to(size)
        else:
            cam = orbit_cameras(scene, 1, size, size, elevation_deg=(20.0,))[0]
        save_png(path, render(scene, cam).image)
        return True
    except Exception as e:  # a thumbnail is a nicety; the batch goes on without it
        print(f"batch: no thumbnail for {path.name}: {type(e).__name__}: {e}", file=sys.stderr)
        return False


def style_thumbnail(src: Path, size: int, path: Path) -> bool:
    try:
        from PIL import Image

        with Image.open(src) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            im.save(path)
        return True
    except OSError as e:
        print(f"batch: no thumbnail for {src}: {e}", file=sys.stderr)
        return False


# ------------------------------------------------------------------------------------------------ running
def _metrics(
    report: dict[str, Any], before: SplatArrays, after: SplatArrays, wall_s: float
) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in (report.get("metrics") or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = float(v)
    total = (report.get("timings") or {}).get("total", {})
    if isinstance(total, dict) and isinstance(total.get("total_s"), (int, float)):
        out["engine_time_s"] = float(total["total_s"])
    out["wall_time_s"] = wall_s
    out["mean_abs_dc_change"] = float(np.abs(after.sh[:, 0] - before.sh[:, 0]).mean())
    return out


def run_batch(manifest: Manifest, client: EngineClient, thumbnails: int = 160, log=print) -> dict[str, Any]:
    """Run (or resume) every combination; returns the state dict (also in <output>/batch_state.json)."""
    out = manifest.output
    (out / "thumbs").mkdir(parents=True, exist_ok=True)
    state_path = out / "batch_state.json"
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.is_file() else {}

    def save() -> None:
        tmp = state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(state_path)

    combos = manifest.combos()
    scenes: dict[Path, SplatArrays] = {}

    def scene(p: Path) -> SplatArrays:
        if p not in scenes:
            scenes[p] = read_splats(p)
        return scenes[p]

    # 1. submit whatever has no live job (the engine queues them and runs one at a time)
    for c in combos:
        st = state.get(c.key, {})
        if st.get("state") == "done" and (out / st.get("output", "")).is_file():
            continue
        if st.get("job_id"):
            try:
                info = client.attach(st["job_id"], watch=False).status()
                if info["state"] in ("queued", "running", "done"):
                    continue
            except RemoteError as e:
                if e.code != "not_found":
                    raise
        from engine.imaging import load_image as load_style_image

        job = client.submit(
            scene(c.asset), load_style_image(c.style), None, c.settings, name=c.key, watch=False
        )
        state[c.key] = {
            "job_id": job.id,
            "state": "queued",
            "asset": str(c.asset),
            "style": str(c.style),
            "settings": c.settings,
            "settings_name": c.settings_name,
            "submitted": time.time(),
        }
        save()
        log(f"submitted {c.key}: job {job.id}")

    # 2. wait for each, fetch results, thumbnails and metrics
    for c in combos:
        st = state[c.key]
        if st.get("state") == "done" and (out / st.get("output", "")).is_file():
            continue
        h = client.attach(st["job_id"], watch=False)
        info = h.wait()
        st["state"] = info["state"]
        if info["state"] != "done":
            st["error"] = info.get("error") or info["state"]
            save()
            log(f"{c.key}: {info['state']} {st['error']}")
            continue
        result = h.result()
        name = f"{c.key}.ply"
        write_splats(result, out / name)
        if thumbnails:  # before and after from the same camera: the job's first view when it reports one
            views = (h.report or {}).get("views") or [None]
            cam = views[0] if isinstance(views[0], dict) else None
            render_thumbnail(scene(c.asset), thumbnails, out / "thumbs" / f"{c.key}.before.png", cam)
            render_thumbnail(result, thumbnails, out / "thumbs" / f"{c.key}.after.png", cam)
            style_png = out / "thumbs" / f"{_slug(_stem(c.style))}.style.png"
            if not style_png.is_file():
                style_thumbnail(c.style, thumbnails, style_png)
        wall = (info.get("finished") or time.time()) - (
            info.get("started") or info.get("created") or time.time()
        )
        st.update(output=name, metrics=_metrics(h.report or {}, scene(c.asset), result, wall), error=None)
        save()
        log(f"{c.key}: done -> {out / name}")
    write_summary(manifest, state)
    return state


def write_summary(manifest: Manifest, state: dict[str, Any]) -> Path:
    out = manifest.output
    rows = []
    metric_names = sorted({k for st in state.values() for k in (st.get("metrics") or {})})
    for c in manifest.combos():
        st = state.get(c.key, {})

        def img(rel: str, alt: str) -> str:
            return (
                f'<img src="{html.escape(rel)}" alt="{html.escape(alt)}">' if (out / rel).is_file() else "-"
            )

        cells = [
            html.escape(_stem(c.asset)),
            img(f"thumbs/{_slug(_stem(c.style))}.style.png", "style") + "<br>" + html.escape(_stem(c.style)),
            html.escape(c.settings_name),
            img(f"thumbs/{c.key}.before.png", "before"),
            img(f"thumbs/{c.key}.after.png", "after"),
            html.escape(st.get("state", "not run"))
            + (f"<br><small>{html.escape(str(st['error']))}</small>" if st.get("error") else ""),
            *[f"{st['metrics'][m]:.4g}" if m in (st.get("metrics") or {}) else "-" for m in metric_names],
            (
                f'<a href="{html.escape(st["output"])}">{html.escape(st["output"])}</a>'
                if st.get("output")
                else "-"
            ),
            html.escape(st.get("job_id", "")),
        ]
        rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    heads = ["asset", "style", "settings", "before", "after", "state", *metric_names, "output", "job"]
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Splatbrush batch: {html.escape(manifest.path.name)}</title>
<style>body{{font-family:sans-serif}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;
padding:4px;text-align:center;vertical-align:middle}} img{{max-width:160px}}</style></head><body>
<h1>Splatbrush batch: {html.escape(manifest.path.name)}</h1>
<p>{sum(1 for s in state.values() if s.get("state") == "done")} of {len(manifest.combos())} done;
written {time.strftime("%Y-%m-%d %H:%M:%S")}</p>
<table><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in heads)}</tr>
{chr(10).join(rows)}
</table></body></html>
"""
    path = out / "index.html"
    path.write_text(page)
    return path


__all__ = ["EngineError", "Manifest", "ManifestError", "load_manifest", "run_batch", "write_summary"]
