"""Gaussians <-> flat per-point attribute arrays, and the display attributes (no bpy, no torch).

A splat object in Blender is a vertex-only mesh: vertex positions are the means, and every other Gaussian
parameter is a FLOAT point attribute named as in the INRIA .ply file, so that export is bit-exact:

    f_dc_0..2                      sh[:, 0, c]
    f_rest_{c * (K - 1) + k - 1}   sh[:, k, c] for k >= 1 (channel-major, as INRIA writes it)
    opacity                        opacity logit
    scale_0..2                     log scales
    rot_0..3                       quaternion w, x, y, z (not normalised: kept as stored)
    extra_<name>                   other per-point properties the file carried (e.g. nx, ny, nz)

The display attributes (`sb_color`, `sb_alpha`, `sb_scale`, `sb_rotation`) are derived, never exported.
"""

from __future__ import annotations

import numpy as np

SH_C0 = 0.28209479177387814
EXTRA_PREFIX = "extra_"
DISPLAY_ATTRIBUTES = ("sb_color", "sb_alpha", "sb_scale", "sb_rotation")
# domain/type per display attribute, as Blender names them
DISPLAY_TYPES = {
    "sb_color": "FLOAT_VECTOR",  # linear RGB (SH DC colour, sRGB-decoded for Blender's linear shading)
    "sb_alpha": "FLOAT",  # sigmoid(opacity)
    "sb_scale": "FLOAT_VECTOR",  # exp(log_scales)
    "sb_rotation": "FLOAT_VECTOR",  # XYZ Euler angles of the normalised quaternion
}


def gaussian_attribute_names(sh_degree: int) -> list[str]:
    """Names of the FLOAT attributes that hold a scene of this SH degree, INRIA order (means excluded)."""
    k = (sh_degree + 1) ** 2
    names = [f"f_dc_{c}" for c in range(3)]
    names += [f"f_rest_{i}" for i in range(3 * (k - 1))]
    names += ["opacity"] + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    return names


def sh_degree_from_names(names: set[str] | list[str]) -> int:
    """SH degree from the f_rest_* attributes present; ValueError when their count is not 0, 9, 24 or 45."""
    n_rest = sum(1 for name in names if name.startswith("f_rest_"))
    degree = {0: 0, 9: 1, 24: 2, 45: 3}.get(n_rest)
    if degree is None:
        raise ValueError(f"found {n_rest} f_rest_* attributes; a 3DGS object has 0, 9, 24 or 45")
    return degree


def pack(arrays) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """SplatArrays -> (positions [N, 3] float32, {attribute name: [N] float32 contiguous}), in INRIA order."""
    n = arrays.num_gaussians
    k = arrays.sh.shape[1]
    sh = np.asarray(arrays.sh, dtype=np.float32)
    out: dict[str, np.ndarray] = {}
    for c in range(3):
        out[f"f_dc_{c}"] = sh[:, 0, c]
    for c in range(3):
        for j in range(1, k):
            out[f"f_rest_{c * (k - 1) + j - 1}"] = sh[:, j, c]
    out["opacity"] = np.asarray(arrays.opacity_logits, dtype=np.float32).reshape(n)
    for i in range(3):
        out[f"scale_{i}"] = np.asarray(arrays.log_scales, dtype=np.float32)[:, i]
    for i in range(4):
        out[f"rot_{i}"] = np.asarray(arrays.quats, dtype=np.float32)[:, i]
    for name, values in arrays.extra.items():
        out[EXTRA_PREFIX + name] = np.asarray(values, dtype=np.float32).reshape(n)
    out = {name: np.ascontiguousarray(v) for name, v in out.items()}
    means = np.ascontiguousarray(np.asarray(arrays.means, dtype=np.float32).reshape(n, 3))
    return means, out


def unpack(positions: np.ndarray, attributes: dict[str, np.ndarray], extra_order: list[str] | None = None):
    """(positions [N, 3], {name: [N]}) -> SplatArrays. Extras come in `extra_order` (the file's order) when
    given, else sorted by name. KeyError-free: a missing Gaussian attribute raises ValueError naming it."""
    from ._shared import shared_module

    SplatArrays = shared_module("splatfile").SplatArrays
    degree = sh_degree_from_names(list(attributes))
    missing = [name for name in gaussian_attribute_names(degree) if name not in attributes]
    if missing:
        raise ValueError(f"not a 3DGS object: attributes {', '.join(missing)} are missing")
    n = positions.shape[0]
    k = (degree + 1) ** 2
    sh = np.empty((n, k, 3), dtype=np.float32)
    for c in range(3):
        sh[:, 0, c] = attributes[f"f_dc_{c}"]
        for j in range(1, k):
            sh[:, j, c] = attributes[f"f_rest_{c * (k - 1) + j - 1}"]
    present = [name[len(EXTRA_PREFIX) :] for name in attributes if name.startswith(EXTRA_PREFIX)]
    order = [name for name in (extra_order or []) if name in present]
    order += sorted(name for name in present if name not in order)
    return SplatArrays(
        means=np.asarray(positions, dtype=np.float32).reshape(n, 3),
        quats=np.stack([attributes[f"rot_{i}"] for i in range(4)], axis=1).astype(np.float32, copy=False),
        log_scales=np.stack([attributes[f"scale_{i}"] for i in range(3)], axis=1).astype(
            np.float32, copy=False
        ),
        opacity_logits=np.asarray(attributes["opacity"], dtype=np.float32),
        sh=sh,
        extra={name: np.asarray(attributes[EXTRA_PREFIX + name], dtype=np.float32) for name in order},
    )


# ---------------------------------------------------------------------------------------------- display
def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055)


def quat_to_euler_xyz(quats: np.ndarray) -> np.ndarray:
    """[N, 4] wxyz (any norm) -> [N, 3] Blender XYZ Euler angles (R = Rz @ Ry @ Rx) of the normalised quat."""
    q = np.asarray(quats, dtype=np.float64)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(norm > 0, q / np.where(norm > 0, norm, 1), np.array([1.0, 0, 0, 0]))
    w, x, y, z = q.T
    r00 = 1 - 2 * (y * y + z * z)
    r10 = 2 * (x * y + w * z)
    r20 = 2 * (x * z - w * y)
    r21 = 2 * (y * z + w * x)
    r22 = 1 - 2 * (x * x + y * y)
    r11 = 1 - 2 * (x * x + z * z)
    r12 = 2 * (y * z - w * x)
    cy = np.hypot(r00, r10)
    regular = cy > 1e-6
    ex = np.where(regular, np.arctan2(r21, r22), np.arctan2(-r12, r11))
    ey = np.arctan2(-r20, cy)
    ez = np.where(regular, np.arctan2(r10, r00), 0.0)
    return np.stack([ex, ey, ez], axis=1)


def display_attributes(arrays) -> dict[str, np.ndarray]:
    """The derived attributes the Geometry Nodes display reads: colour, alpha, scale and Euler rotation."""
    dc = np.asarray(arrays.sh[:, 0, :], dtype=np.float64)
    colour = srgb_to_linear(0.5 + SH_C0 * dc)  # [N, 3]
    alpha = 1.0 / (1.0 + np.exp(-np.asarray(arrays.opacity_logits, dtype=np.float64)))
    scale = np.exp(np.clip(np.asarray(arrays.log_scales, dtype=np.float64), -30, 30))
    return {
        "sb_color": np.ascontiguousarray(colour, dtype=np.float32),
        "sb_alpha": np.ascontiguousarray(alpha, dtype=np.float32),
        "sb_scale": np.ascontiguousarray(scale, dtype=np.float32),
        "sb_rotation": np.ascontiguousarray(quat_to_euler_xyz(arrays.quats), dtype=np.float32),
    }


def colours_changed(before, after, tolerance: float = 1e-6) -> float:
    """Fraction of Gaussians whose SH coefficients differ by more than `tolerance` (0..1)."""
    diff = np.abs(np.asarray(after.sh, dtype=np.float64) - np.asarray(before.sh, dtype=np.float64))
    return float((diff.reshape(diff.shape[0], -1).max(axis=1) > tolerance).mean())
