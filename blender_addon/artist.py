"""Artist-facing decisions without bpy: the up axis of an imported file, why Stylize cannot run, the job
settings, and partial stylization (a per-Gaussian weight, its soft edge, and the colour blend that keeps
every splat outside it bit-identical).

Partial stylization contract with the engine: the submitted Gaussians carry the weights as the extra
attribute `shared_protocol.payloads.MASK_ATTRIBUTE` (float32 [N], 0..1) and the settings carry
`overrides={"style_strength": s}`, once `shared_protocol` has them; the add-on always applies the same blend
to the result (`blend_result`), so splats with weight 0 keep their original SH bytes whichever engine
answers.
"""

from __future__ import annotations

import os

import numpy as np

DELIVERY_SUFFIXES = (".compressed.ply", ".splat", ".spz", ".sog", ".glb")
"""Formats made for viewers from captures (COLMAP frames, -Y up)."""
PRESET_SIZES = {"preview": 112, "fast": 160, "painterly": 256, "paper": 512}


def detect_up_axis(path: str, extra_names) -> str:
    """ "-Y" for a COLMAP capture, "Z" for a Blender-made scene, from what the file says about its origin:
    INRIA's trainer writes (zero) normals nx/ny/nz into captures; viewer formats (.compressed.ply, .splat,
    .spz, .sog, .glb) come from such captures too. Anything else (e.g. a .ply written by Blender or this
    add-on) is taken as +Z up. The import's Up axis option overrides this guess."""
    name = os.fspath(path).lower()
    if name.endswith(DELIVERY_SUFFIXES) or os.path.isdir(path):
        return "-Y"
    if {"nx", "ny", "nz"} <= set(extra_names):
        return "-Y"
    return "Z"


def stylize_problem(obj, is_splat: bool, running: bool, style_image: str, file_exists) -> str:
    """ "" when Stylize can run on `obj`, else the reason (shown by the greyed-out button's tooltip)."""
    if running:
        return "a Stylize job is running: wait for it or press Cancel"
    if obj is None:
        return "select a splat object (File > Import > Gaussian Splats) or a mesh"
    if obj.type != "MESH":
        return f"{obj.name!r} is a {obj.type.lower()}: Stylize works on splat objects and meshes"
    if not is_splat and len(obj.data.polygons) == 0:
        return f"{obj.name!r} has no faces to sample Gaussians on"
    if not style_image.strip():
        return "pick a style image in the Splatbrush panel"
    if not file_exists(style_image):
        return f"the style image {style_image!r} does not exist"
    return ""


def engine_supports(feature: str) -> bool:
    """Does this `shared_protocol` carry "mask" (the MASK_ATTRIBUTE extra) or "style_strength" (JobSettings
    overrides)? The engine side lands separately; until then the add-on blends on its own."""
    from ._shared import shared_module

    payloads = shared_module("payloads")
    if feature == "mask":
        return hasattr(payloads, "MASK_ATTRIBUTE")
    if feature == "style_strength":
        return "overrides" in payloads.JobSettings.__dataclass_fields__
    raise ValueError(f"unknown engine feature {feature!r}")


def with_mask(gaussians, weights: np.ndarray):
    """The Gaussians to submit, carrying the restyle weights as the engine's mask attribute."""
    from dataclasses import replace

    from ._shared import shared_module

    name = shared_module("payloads").MASK_ATTRIBUTE
    extra = {**gaussians.extra, name: np.ascontiguousarray(weights, dtype=np.float32)}
    return replace(gaussians, extra=extra)


def job_settings(settings, device: str, views: int, strength_on_engine: bool) -> dict:
    """The JobSettings dict for one run from the scene's Splatbrush settings."""
    out = {
        "preset": settings.preset,
        "steps": settings.steps or None,
        "size": settings.size or None,
        "views": views,
        "seed": settings.seed,
        "device": device,
    }
    if strength_on_engine:
        out["overrides"] = {"style_strength": float(settings.style_strength)}
    return out


def working_size(settings) -> int:
    return settings.size or PRESET_SIZES.get(settings.preset, 256)


# ------------------------------------------------------------------------------------------ masks
def soft_edge(
    means: np.ndarray, weights: np.ndarray, distance: float, cell_limit: int = 2_000_000
) -> np.ndarray:
    """Weights [N] in 0..1 with a linear fall-off over `distance` around the Gaussians of weight 1: a splat
    at distance d from the nearest fully chosen one gets max(own, 1 - d / distance). Exact nearest distances
    through a voxel grid of cell `distance` (only the 27 neighbouring cells can be closer than `distance`)."""
    w = np.clip(np.asarray(weights, dtype=np.float32), 0.0, 1.0)
    if distance <= 0 or not (w >= 1.0).any() or (w >= 1.0).all():
        return w
    pts = np.asarray(means, dtype=np.float64)
    inside = pts[w >= 1.0]
    cells = np.floor(inside / distance).astype(np.int64)
    keys, order = _cell_keys(cells), None
    order = np.argsort(keys, kind="stable")
    keys, inside = keys[order], inside[order]
    out_idx = np.nonzero(w < 1.0)[0]
    q = pts[out_idx]
    qcell = np.floor(q / distance).astype(np.int64)
    best = np.full(len(q), np.inf)
    offsets = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
    for off in offsets:
        k = _cell_keys(qcell + off)
        lo, hi = np.searchsorted(keys, k, "left"), np.searchsorted(keys, k, "right")
        has = np.nonzero(hi > lo)[0]
        if len(has) == 0:
            continue
        # walk the points of each hit cell in lockstep (cells hold few points at this cell size)
        start, count = lo[has], hi[has] - lo[has]
        for r in range(int(count.max())):
            live = count > r
            idx = has[live]
            d = np.linalg.norm(q[idx] - inside[start[live] + r], axis=1)
            best[idx] = np.minimum(best[idx], d)
    falloff = np.clip(1.0 - best / distance, 0.0, 1.0).astype(np.float32)
    w[out_idx] = np.maximum(w[out_idx], falloff)
    return w


def _cell_keys(cells: np.ndarray) -> np.ndarray:
    c = cells + (1 << 20)
    return (c[:, 0] << 42) | (c[:, 1] << 21) | c[:, 2]


def blend_result(original, styled, weights: np.ndarray | None, strength: float, strength_done: bool):
    """The stylized SplatArrays with colours original + w (styled - original), w = weight x strength (the
    strength only when the engine did not apply it). Gaussians with w == 0 keep the original SH bytes;
    with w == 1 the engine's. Geometry comes from the engine's result (it keeps it)."""
    from dataclasses import replace

    from ._shared import shared_module

    mask_name = getattr(shared_module("payloads"), "MASK_ATTRIBUTE", None)
    if mask_name in styled.extra:  # the engine's input, never part of a result
        styled = replace(styled, extra={k: v for k, v in styled.extra.items() if k != mask_name})
    n = original.num_gaussians
    w = np.ones(n, dtype=np.float32) if weights is None else np.clip(np.asarray(weights, np.float32), 0, 1)
    if not strength_done:
        w = w * np.float32(np.clip(strength, 0.0, 1.0))
    if (w == 1.0).all():
        return styled
    a, b = np.asarray(original.sh, dtype=np.float32), np.asarray(styled.sh, dtype=np.float32)
    if a.shape != b.shape:
        raise ValueError(f"the result's SH {b.shape} does not match the original's {a.shape}")
    mixed = (a + w[:, None, None] * (b - a)).astype(np.float32)
    sh = np.where((w == 0.0)[:, None, None], a, np.where((w == 1.0)[:, None, None], b, mixed))
    return replace(styled, sh=np.ascontiguousarray(sh, dtype=np.float32))
