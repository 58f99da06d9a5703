"""Field validators for message bodies: each raises ProtocolError naming the field and what it must be."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from .errors import ProtocolError

JOB_ID_RE = re.compile(r"[0-9a-f]{12}")  # always used with fullmatch (no "$" newline loophole)
TOKEN_RE = re.compile(r"[0-9a-f]{32}")
KEY_RE = re.compile(r"[A-Za-z0-9_\-]{8,64}")
"""Client-generated idempotency keys."""
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
TERMINAL_STATES = ("done", "failed", "cancelled")


def check_keys(
    where: str, body: dict[str, Any], required: set[str], optional: set[str] = frozenset()
) -> None:
    keys = set(body)
    missing = required - keys
    if missing:
        raise ProtocolError(f"{where}: missing field(s) {sorted(missing)}")
    unknown = keys - required - set(optional)
    if unknown:
        raise ProtocolError(f"{where}: unknown field(s) {sorted(unknown)}")


def req_int(where: str, value: Any, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ProtocolError(f"{where} must be an integer in [{lo}, {hi}], got {value!r:.60}")
    return value


def opt_int(where: str, value: Any, lo: int, hi: int) -> int | None:
    return None if value is None else req_int(where, value, lo, hi)


def req_float(where: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ProtocolError(f"{where} must be a finite number, got {value!r:.60}")
    return float(value)


def opt_float(where: str, value: Any) -> float | None:
    return None if value is None else req_float(where, value)


def req_str(where: str, value: Any, max_len: int = 256, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str) or len(value) > max_len:
        raise ProtocolError(f"{where} must be a string of at most {max_len} characters, got {value!r:.60}")
    if pattern is not None and not pattern.fullmatch(value):
        raise ProtocolError(f"{where} {value!r:.60} does not match {pattern.pattern}")
    return value


def opt_str(where: str, value: Any, max_len: int = 256, pattern: re.Pattern[str] | None = None) -> str | None:
    return None if value is None else req_str(where, value, max_len, pattern)


def req_bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(f"{where} must be true or false, got {value!r:.60}")
    return value


def job_id(where: str, value: Any) -> str:
    """Job ids are 12 lowercase hex digits; nothing else (no paths) is ever accepted."""
    if not isinstance(value, str) or not JOB_ID_RE.fullmatch(value):
        raise ProtocolError(f"{where} {value!r:.60} is not a job id (12 lowercase hex digits)")
    return value


def job_state(where: str, value: Any) -> str:
    if value not in JOB_STATES:
        raise ProtocolError(f"{where} {value!r:.60} is not one of {JOB_STATES}")
    return value


def float_dict(where: str, value: Any, max_items: int = 64) -> dict[str, float]:
    if not isinstance(value, dict) or len(value) > max_items:
        raise ProtocolError(f"{where} must be an object of at most {max_items} name: number pairs")
    return {req_str(f"{where} key", k, 64): req_float(f"{where}[{k!r}]", v) for k, v in value.items()}


def json_dict(where: str, value: Any, max_depth: int = 6) -> dict[str, Any]:
    """A free-form JSON object (reports, limits): only checks that it is an object of bounded depth."""
    if not isinstance(value, dict):
        raise ProtocolError(f"{where} must be a JSON object")

    def depth(v: Any, d: int) -> None:
        if d > max_depth:
            raise ProtocolError(f"{where} is nested deeper than {max_depth} levels")
        if isinstance(v, dict):
            for x in v.values():
                depth(x, d + 1)
        elif isinstance(v, list):
            for x in v:
                depth(x, d + 1)

    depth(value, 0)
    return value


def image_array(where: str, a: Any, max_side: int = 8192, min_side: int = 1) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        shape = getattr(a, "shape", None)
        raise ProtocolError(
            f"{where} must be a uint8 [H, W, 3] image, got {getattr(a, 'dtype', type(a))} {shape}"
        )
    h, w = a.shape[:2]
    if not (min_side <= h <= max_side and min_side <= w <= max_side):
        raise ProtocolError(f"{where} is {w}x{h}; each side must be {min_side}..{max_side} pixels")
    return a


def camera_dict(where: str, d: Any, max_side: int = 16384) -> dict[str, Any]:
    """A camera in `engine.cameras.Camera.to_dict()` form, checked without the engine (no torch here)."""
    if not isinstance(d, dict):
        raise ProtocolError(f"{where} must be an object (Camera.to_dict() form)")
    check_keys(where, d, {"world_to_camera", "fx", "fy", "cx", "cy", "width", "height"}, {"name"})
    m = d["world_to_camera"]
    if not (isinstance(m, list) and len(m) == 4 and all(isinstance(r, list) and len(r) == 4 for r in m)):
        raise ProtocolError(f"{where}.world_to_camera must be a 4x4 list of numbers")
    rows = [
        [req_float(f"{where}.world_to_camera[{i}][{j}]", x) for j, x in enumerate(r)] for i, r in enumerate(m)
    ]
    out = {
        "world_to_camera": rows,
        "fx": req_float(f"{where}.fx", d["fx"]),
        "fy": req_float(f"{where}.fy", d["fy"]),
        "cx": req_float(f"{where}.cx", d["cx"]),
        "cy": req_float(f"{where}.cy", d["cy"]),
        "width": req_int(f"{where}.width", d["width"], 1, max_side),
        "height": req_int(f"{where}.height", d["height"], 1, max_side),
        "name": req_str(f"{where}.name", d.get("name", ""), 256),
    }
    check_camera_geometry(where, out)
    return out


MIN_FOV_DEG, MAX_FOV_DEG = 0.01, 179.0
"""Fields of view a camera may have (narrower or wider than this is a unit mix-up, not a lens)."""


def check_camera_geometry(where: str, cam: dict[str, Any]) -> None:
    """What `engine.cameras.Camera` requires, checked at submit: a rigid world_to_camera (last row 0 0 0 1,
    orthonormal rotation), fields of view in [0.01, 179] degrees, the principal point within one image size
    of the image."""
    m = np.asarray(cam["world_to_camera"], np.float64)  # [4, 4]
    if not np.allclose(m[3], [0, 0, 0, 1]):
        raise ProtocolError(f"{where}.world_to_camera's last row must be [0, 0, 0, 1], got {m[3].tolist()}")
    r = m[:3, :3]
    err = float(np.abs(r @ r.T - np.eye(3)).max())
    if err > 1e-4:
        raise ProtocolError(
            f"{where}.world_to_camera's rotation is not orthonormal (|R R^T - I| = {err:.3g}); remove scale "
            "or shear from the camera"
        )
    w, h, fx, fy = cam["width"], cam["height"], cam["fx"], cam["fy"]
    for name, f, side in (("fx", fx, w), ("fy", fy, h)):
        lo = side / (2 * math.tan(math.radians(MAX_FOV_DEG) / 2))
        hi = side / (2 * math.tan(math.radians(MIN_FOV_DEG) / 2))
        if not lo <= f <= hi:
            raise ProtocolError(
                f"{where}.{name}={f:.6g} for a {w}x{h} image gives a field of view outside "
                f"[{MIN_FOV_DEG}, {MAX_FOV_DEG}] degrees (focal length must be {lo:.4g}..{hi:.4g} pixels)"
            )
    if not (-w <= cam["cx"] <= 2 * w and -h <= cam["cy"] <= 2 * h):
        raise ProtocolError(
            f"{where}: principal point ({cam['cx']:.6g}, {cam['cy']:.6g}) is far outside the {w}x{h} image"
        )
