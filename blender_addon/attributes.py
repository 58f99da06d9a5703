"""Gaussians <-> flat per-point attribute arrays, and the display attributes (no bpy, no torch).

A splat object in Blender is a vertex-only mesh: vertex positions are the means, and every other Gaussian
parameter is a FLOAT point attribute named as in the INRIA .ply file, so that export is bit-exact:

    f_dc_0..2                      sh[:, 0, c]
    f_rest_{c * (K - 1) + k - 1}   sh[:, k, c] for k >= 1 (channel-major, as INRIA writes it)
    opacity                        opacity logit
    scale_0..2                     log scales
    rot_0..3                       quaternion w, x, y, z (not normalised: kept as stored)
    extra_<name>                   other per-point properties the file carried (e.g. nx, ny, nz)

The display attributes (`sb_*`, `DISPLAY_ATTRIBUTES`; some baked for one camera) are derived, never exported.
"""

from __future__ import annotations

import numpy as np

SH_C0 = 0.28209479177387814
EXTRA_PREFIX = "extra_"
DISPLAY_ATTRIBUTES = ("sb_color", "sb_color_display", "sb_alpha", "sb_extent", "sb_scale", "sb_rotation",
                      "sb_card_rotation", "sb_card_scale")  # fmt: skip
# domain/type per display attribute, as Blender names them
DISPLAY_TYPES = {
    "sb_color": "FLOAT_VECTOR",  # linear RGB (SH colour toward the camera, sRGB-decoded for Blender)
    "sb_color_display": "FLOAT_VECTOR",  # the same colour as the renderer's sRGB display values
    "sb_alpha": "FLOAT",  # sigmoid(opacity)
    "sb_extent": "FLOAT",  # std devs at which opacity x G falls to 1/255 (3DGS skips it beyond)
    "sb_scale": "FLOAT_VECTOR",  # exp(log_scales), widened by the screen blur at the camera
    "sb_rotation": "FLOAT_VECTOR",  # XYZ Euler angles of the normalised quaternion
    "sb_card_rotation": "FLOAT_VECTOR",  # camera-facing card (baked for one camera): XYZ Euler
    "sb_card_scale": "FLOAT_VECTOR",  # the card's std devs along its axes
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


def matrix_to_euler_xyz(rot: np.ndarray) -> np.ndarray:
    """[N, 3, 3] rotation matrices -> [N, 3] Blender XYZ Euler angles (R = Rz @ Ry @ Rx)."""
    r = np.asarray(rot, dtype=np.float64)
    cy = np.hypot(r[:, 0, 0], r[:, 1, 0])
    regular = cy > 1e-6
    ex = np.where(regular, np.arctan2(r[:, 2, 1], r[:, 2, 2]), np.arctan2(-r[:, 1, 2], r[:, 1, 1]))
    ey = np.arctan2(-r[:, 2, 0], cy)
    ez = np.where(regular, np.arctan2(r[:, 1, 0], r[:, 0, 0]), 0.0)
    return np.stack([ex, ey, ez], axis=1)


def quat_to_euler_xyz(quats: np.ndarray) -> np.ndarray:
    """[N, 4] wxyz (any norm) -> [N, 3] Blender XYZ Euler angles (R = Rz @ Ry @ Rx) of the normalised quat."""
    return matrix_to_euler_xyz(quat_to_matrix(quats))


SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
         0.5462742152960396)  # fmt: skip
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)  # fmt: skip
EPS2D = 0.3  # 3DGS adds this to every projected 2D covariance (pixels^2)
CLIP_MARGIN = 0.3  # 3DGS clamps the projection Jacobian's x/y at 1.3x the field of view


def sh_basis(degree: int, dirs: np.ndarray) -> np.ndarray:
    """[N, (degree+1)^2] real SH basis of unit directions [N, 3], INRIA 3DGS ordering and signs."""
    x, y, z = (np.asarray(dirs, dtype=np.float64)[:, i] for i in range(3))
    cols = [np.full_like(x, SH_C0)]
    if degree >= 1:
        cols += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        cols += [SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2 * zz - xx - yy), SH_C2[3] * x * z,
                 SH_C2[4] * (xx - yy)]  # fmt: skip
    if degree >= 3:
        cols += [SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * x * y * z, SH_C3[2] * y * (4 * zz - xx - yy),
                 SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy),
                 SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3 * yy)]  # fmt: skip
    return np.stack(cols, axis=1)


def view_colours(arrays, position=None) -> np.ndarray:
    """[N, 3] sRGB colour the renderer gives each Gaussian seen from `position` (every SH band it has:
    0.5 + sum_k basis_k(dir) sh_k, clamped at 0; dir = centre - position); DC only without a position."""
    sh = np.asarray(arrays.sh, dtype=np.float64)
    means = np.asarray(arrays.means, dtype=np.float64)
    degree = int(round(np.sqrt(sh.shape[1]))) - 1 if position is not None else 0
    if degree > 0:
        dirs = means - np.asarray(position, dtype=np.float64).reshape(1, 3)
        dirs /= np.maximum(np.linalg.norm(dirs, axis=1, keepdims=True), 1e-12)
    else:
        dirs = np.zeros_like(means)
    basis = sh_basis(degree, dirs)  # [N, K]
    return np.maximum(np.einsum("nk,nkc->nc", basis, sh[:, : basis.shape[1]]) + 0.5, 0.0)


def _camera_frame(view: dict):
    """(world_to_camera [4, 4], fx, fy, cx, cy, width, height) of an engine camera dict, checked."""
    keys = ("world_to_camera", "fx", "fy", "cx", "cy", "width", "height")
    missing = [k for k in keys if k not in view]
    if missing:
        raise ValueError(f"view lacks {', '.join(missing)} (has {', '.join(sorted(view))})")
    w2c = np.asarray(view["world_to_camera"], dtype=np.float64)
    if w2c.shape != (4, 4) or not np.isfinite(w2c).all():
        raise ValueError(f"view world_to_camera must be a finite 4x4 matrix, got shape {w2c.shape}")
    fx, fy = float(view["fx"]), float(view["fy"])
    if not (fx > 0 and fy > 0):
        raise ValueError(f"view focal lengths must be positive pixels, got fx={fx!r}, fy={fy!r}")
    return w2c, fx, fy, float(view["cx"]), float(view["cy"]), int(view["width"]), int(view["height"])


FOREACH_KEY = {"FLOAT": "value", "FLOAT_VECTOR": "vector", "QUATERNION": "value", "FLOAT4": "vector"}
"""The foreach_get/foreach_set key of each point attribute type the add-on stores."""


def set_point_attribute(data, name: str, kind: str, values: np.ndarray) -> None:
    """Write `values` to the POINT attribute `name` of type `kind` on a mesh or point cloud (`data`: anything
    with Blender's `.attributes`), replacing one of another type or domain; no per-point Python loop."""
    attr = data.attributes.get(name)
    if attr is not None and (attr.data_type != kind or attr.domain != "POINT"):
        data.attributes.remove(attr)
        attr = None
    if attr is None:
        attr = data.attributes.new(name, kind, "POINT")
    attr.data.foreach_set(FOREACH_KEY[kind], np.ascontiguousarray(values, dtype=np.float32).ravel())


def quat_to_matrix(quats: np.ndarray) -> np.ndarray:
    """[N, 4] wxyz (any norm; zero -> identity) -> [N, 3, 3] rotation matrices."""
    q = np.asarray(quats, dtype=np.float64)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(norm > 0, q / np.where(norm > 0, norm, 1), np.array([1.0, 0, 0, 0]))
    w, x, y, z = q.T
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def card_attributes(arrays, view: dict) -> dict[str, np.ndarray]:
    """Each Gaussian's 2D footprint for one camera as a card: the 3DGS EWA projection (the renderer's
    Jacobian with its field-of-view clamp, + 0.3 px^2 blur) gives a 2D covariance; the card lies in the plane
    through the centre facing the camera (depth = the centre's: what 3DGS sorts by), its axes the covariance's
    eigenvectors scaled to one standard deviation at that depth, its normal toward the camera. `view`:
    the engine's camera dict (world_to_camera, fx, fy, cx, cy, width, height) in the object's local space.
    Returns sb_card_rotation (XYZ Euler) and sb_card_scale (std devs along the axes; ~0 when not drawn)."""
    w2c, fx, fy, cx, cy, width, height = _camera_frame(view)
    rc = w2c[:3, :3]
    mc = np.asarray(arrays.means, dtype=np.float64) @ rc.T + w2c[:3, 3]
    x, y, z = mc.T
    ok = z > 0.01  # the renderer's near plane
    zs = np.where(ok, z, 1.0)
    mx, my = CLIP_MARGIN * 0.5 * width / fx, CLIP_MARGIN * 0.5 * height / fy  # the renderer's FOV clamp
    tx = zs * np.clip(x / zs, -(cx / fx + mx), (width - cx) / fx + mx)
    ty = zs * np.clip(y / zs, -(cy / fy + my), (height - cy) / fy + my)
    jac = np.zeros((len(z), 2, 3))
    jac[:, 0, 0], jac[:, 0, 2] = fx / zs, -fx * tx / zs**2
    jac[:, 1, 1], jac[:, 1, 2] = fy / zs, -fy * ty / zs**2
    log_scales = np.clip(np.asarray(arrays.log_scales, dtype=np.float64), -30, 30)
    m = quat_to_matrix(arrays.quats) * np.exp(log_scales)[:, None, :]
    p = jac @ rc @ m  # [N, 2, 3]
    cov = p @ p.transpose(0, 2, 1) + EPS2D * np.eye(2)
    lam, vec = np.linalg.eigh(cov)  # ascending; columns are eigenvectors (pixel axes)
    focal = 0.5 * (fx + fy)  # cards are rotation x scale: square pixels assumed (fx = fy)
    axis1 = vec[:, 0, :, None] * rc[0] + vec[:, 1, :, None] * rc[1]  # [N, 2(eigen), 3] local directions
    normal = np.broadcast_to(-rc[2], (len(z), 3))  # toward the camera
    a0 = axis1[:, 1]  # major axis first
    a1 = np.cross(normal, a0)  # right-handed: a0 x a1 = normal
    rot = np.stack([a0, a1, normal], axis=-1)  # columns
    std = np.sqrt(np.maximum(lam[:, ::-1], 0.0)) * (zs / focal)[:, None]
    scale = np.concatenate([std, np.full((len(z), 1), 1.0)], axis=1)
    scale[~ok] = 1e-9
    return {
        "sb_card_rotation": np.ascontiguousarray(matrix_to_euler_xyz(rot), dtype=np.float32),
        "sb_card_scale": np.ascontiguousarray(scale, dtype=np.float32),
    }


def display_attributes(arrays, view=None) -> dict[str, np.ndarray]:
    """The derived attributes the display reads: colour (linear RGB for Blender's shading: the renderer's
    sRGB colour decoded), opacity, standard deviations and Euler rotation of the ellipsoids; with a `view`
    (the engine's camera dict in the object's local space, see `card_attributes`) the colour is evaluated
    toward that camera with every SH band, and the camera-facing cards are added."""
    position = None
    if view is not None:
        w2c = _camera_frame(view)[0]
        position = -w2c[:3, :3].T @ w2c[:3, 3]
    shown = view_colours(arrays, position)  # [N, 3]
    alpha = 1.0 / (1.0 + np.exp(-np.asarray(arrays.opacity_logits, dtype=np.float64)))
    scale = np.exp(np.clip(np.asarray(arrays.log_scales, dtype=np.float64), -30, 30))
    extent = np.sqrt(np.maximum(2.0 * np.log(np.maximum(alpha, 1e-30) * 255.0), 0.0))
    out = {
        "sb_color": np.ascontiguousarray(srgb_to_linear(shown), dtype=np.float32),
        "sb_color_display": np.ascontiguousarray(np.clip(shown, 0.0, 1.0), dtype=np.float32),
        "sb_alpha": np.ascontiguousarray(alpha, dtype=np.float32),
        "sb_extent": np.ascontiguousarray(extent, dtype=np.float32),
        "sb_scale": np.ascontiguousarray(scale, dtype=np.float32),
        "sb_rotation": np.ascontiguousarray(quat_to_euler_xyz(arrays.quats), dtype=np.float32),
    }
    if view is not None:
        out.update(card_attributes(arrays, view))
    return out


def colours_changed(before, after, tolerance: float = 1e-6) -> float:
    """Fraction of Gaussians whose SH coefficients differ by more than `tolerance` (0..1)."""
    diff = np.abs(np.asarray(after.sh, dtype=np.float64) - np.asarray(before.sh, dtype=np.float64))
    return float((diff.reshape(diff.shape[0], -1).max(axis=1) > tolerance).mean())
