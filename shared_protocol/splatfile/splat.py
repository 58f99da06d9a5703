"""antimatter15 `.splat`: read and write (pure numpy).

No header; 32 bytes a splat, little-endian:

    position  float32 x3
    scale     float32 x3   LINEAR scale (exp of the log scale)
    colour    uint8 x4     r, g, b = clamp(SH_C0 * f_dc + 0.5, 0, 1) * 255, a = sigmoid(opacity) * 255
    rotation  uint8 x4     (q / |q|) * 128 + 128 clamped to 0..255, w x y z

What .splat cannot hold is dropped on write: SH bands above 0, extra properties, and precision (colour,
opacity and rotation are 8-bit). Within that, a round trip is exact: `read(write(read(f))) == read(f)` bit for
bit. The writer rounds to the nearest byte, writes a rotation that is already on the 8-bit grid as is, and
picks the float32 linear scale whose log reads back to the same float32 log scale.

Read: rotation = (byte - 128) / 128 (not renormalised: GaussianScene takes unnormalised quaternions), log
scale = log(scale), SH DC = (byte / 255 - 0.5) / SH_C0, opacity logit = logit(a / 255) with a / 255 kept in
[1e-6, 1 - 1e-6]. Arithmetic is float64, stored float32.
"""

from __future__ import annotations

import os

import numpy as np

from .arrays import SplatArrays
from .errors import SplatFileError
from .ply import atomic_output, checked, nonfinite_report

SH_C0 = 0.28209479177387814
OPACITY_EPS = 1e-6
SPLAT_DTYPE = np.dtype(
    [("position", "<f4", (3,)), ("scale", "<f4", (3,)), ("rgba", "u1", (4,)), ("rot", "u1", (4,))]
)
assert SPLAT_DTYPE.itemsize == 32


def read_splat(path: str | os.PathLike, check_finite: bool = True) -> SplatArrays:
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise SplatFileError(path, "file not found") from None
    if size == 0:
        raise SplatFileError(path, "the .splat file is empty (0 splats)")
    if size % SPLAT_DTYPE.itemsize:
        raise SplatFileError(
            path,
            f"size {size} bytes is not a multiple of 32 (one .splat record): truncated or not a .splat file",
        )
    rec = np.fromfile(path, dtype=SPLAT_DTYPE)
    n = rec.shape[0]
    scale = rec["scale"].astype(np.float64)
    if check_finite and not (scale > 0).all():  # also catches NaN
        bad = int(n * 3 - np.count_nonzero(scale > 0))
        raise SplatFileError(
            path, f"{bad} scale values are not positive finite numbers (log scale undefined)"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        log_scales = np.log(scale).astype(np.float32)
    rgba = rec["rgba"].astype(np.float64)
    sh = ((rgba[:, :3] / 255.0 - 0.5) / SH_C0).astype(np.float32)[:, None, :]
    a = np.clip(rgba[:, 3] / 255.0, OPACITY_EPS, 1.0 - OPACITY_EPS)
    opacity_logits = np.log(a / (1.0 - a)).astype(np.float32)
    quats = ((rec["rot"].astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    means = np.ascontiguousarray(rec["position"])
    arrays = SplatArrays(means, quats, log_scales, opacity_logits, np.ascontiguousarray(sh))
    if check_finite:
        report = nonfinite_report({"position": means, "scale": log_scales})
        if report:
            raise SplatFileError(path, f"non-finite values: {report}")
    return arrays


def _rotation_bytes(quats: np.ndarray) -> np.ndarray:
    """[N, 4] float -> [N, 4] uint8. Quaternions already on the 8-bit grid (as `read_splat` returns them)
    are written unchanged; others are normalised, scaled by 128, offset by 128, rounded and clamped."""
    q = quats.astype(np.float64)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    grid = q * 128.0 + 128.0
    on_grid = (grid == np.rint(grid)).all(axis=1) & (grid >= 0).all(axis=1) & (grid <= 255).all(axis=1)
    on_grid &= np.abs(norm[:, 0] - 1.0) < 0.02  # a quantised unit quaternion, not an arbitrary grid point
    encoded = np.clip(np.rint(q / np.maximum(norm, 1e-30) * 128.0 + 128.0), 0, 255)
    return np.where(on_grid[:, None], grid, encoded).astype(np.uint8)


def _linear_scales(log_scales: np.ndarray) -> np.ndarray:
    """float32 log scales -> float32 linear scales s with float32(log(s)) == the log scale wherever one exists
    (tries exp's float32 rounding and its neighbours), so that read(write(read(f))) is exact."""
    lg = log_scales.astype(np.float32).reshape(-1)
    s = np.exp(lg.astype(np.float64)).astype(np.float32)
    with np.errstate(divide="ignore"):
        wrong = np.log(s.astype(np.float64)).astype(np.float32) != lg
    for step in (1, -1, 2, -2):
        if not wrong.any():
            break
        cand = s[wrong]
        for _ in range(abs(step)):
            cand = np.nextafter(cand, np.float32(np.inf) if step > 0 else np.float32(0))
        with np.errstate(divide="ignore"):
            hit = np.log(cand.astype(np.float64)).astype(np.float32) == lg[wrong]
        idx = np.flatnonzero(wrong)[hit]
        s[idx] = cand[hit]
        wrong[idx] = False
    return s.reshape(log_scales.shape)


def write_splat(arrays: SplatArrays, path: str | os.PathLike) -> None:
    """Write a .splat (drops SH bands above 0 and extras; see the module docstring)."""
    checked(arrays, path)
    n = arrays.num_gaussians
    scales = _linear_scales(arrays.log_scales)
    bad = nonfinite_report({"log_scales": np.where(scales > 0, scales, np.inf)})
    if bad:
        raise SplatFileError(path, f"cannot write: scales overflow or underflow float32 in .splat ({bad})")
    rec = np.empty(n, SPLAT_DTYPE)
    rec["position"] = arrays.means
    rec["scale"] = scales
    rgb = np.clip(arrays.sh[:, 0, :].astype(np.float64) * SH_C0 + 0.5, 0.0, 1.0)
    rec["rgba"][:, :3] = np.rint(rgb * 255.0)
    with np.errstate(over="ignore"):
        alpha = 1.0 / (1.0 + np.exp(-arrays.opacity_logits.astype(np.float64)))
    rec["rgba"][:, 3] = np.rint(alpha * 255.0)
    rec["rot"] = _rotation_bytes(arrays.quats)
    with atomic_output(path) as f:
        rec.tofile(f)
