"""Helpers for the batch tests: tiny assets, styles and manifests that stylize in about a second."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from server_helpers import make_arrays

from shared_protocol.splatfile import write_splats

# the weight-free `fast` preset, shrunk: 4 steps of 32 px over 3 orbit views, small statistics, no strokes,
# no final metrics (they cost more than the job at this size)
TINY = {"preset": "fast", "steps": 4, "size": 32, "views": 3, "seed": 1}
TINY_OVERRIDES = {
    "lr": 0.06,
    "checkpoint_every": 2,
    "final_metrics": False,
    "color_cache": False,
    "stroke_size": 0.0,
    "weightfree": {"style_height": 32, "texture_scales": 1, "direction_sets": 2, "texture_filters": 8},
}


def make_inputs(folder: Path, n_assets: int = 2, n_styles: int = 2) -> tuple[list[str], list[str]]:
    assets, styles = [], []
    for i in range(n_assets):
        g = make_arrays(300, seed=20 + i)
        g.log_scales[:] = -2.5  # small splats inside a unit cloud: a render with real coverage
        write_splats(g, folder / f"asset{i}.ply")
        assets.append(f"asset{i}.ply")
    for i in range(n_styles):
        img = np.random.default_rng(40 + i).integers(0, 255, (32, 32, 3), dtype=np.uint8)
        img[:, :, i % 3] = 255 - 100 * i  # styles of clearly different colour
        Image.fromarray(img).save(folder / f"style{i}.png")
        styles.append(f"style{i}.png")
    return assets, styles


def toml_value(v) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def write_manifest(
    folder: Path, output: str, assets: list[str], styles: list[str], ray: dict | None = None, **settings
) -> Path:
    s = {**TINY, "overrides": TINY_OVERRIDES, **settings}
    lines = [
        f"output = {toml_value(output)}",
        f"assets = {toml_value(assets)}",
        f"styles = {toml_value(styles)}",
        "[[settings]]",
        *[f"{k} = {toml_value(v)}" for k, v in s.items()],
    ]
    if ray:
        lines += ["[ray]", *[f"{k} = {toml_value(v)}" for k, v in ray.items()]]
    path = folder / f"{output}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def outputs(folder: Path) -> dict[str, bytes]:
    """Result files of a batch output folder: name -> bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.ply"))}
