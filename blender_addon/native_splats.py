"""Blender 5.3+ native Gaussian splats: a PointCloud of type GAUSSIAN_SPLAT, drawn by Blender itself.

What Blender 5.3 expects, read from its own importers (`wm.spz_import`, the glTF importer's
KHR_gaussian_splatting path) and checked by importing a real .spz in bpy 5.3.0 (see docs/blender.md):

    position        FLOAT_VECTOR  the means
    scale           FLOAT_VECTOR  linear standard deviations, exp(log scale)
    rotation        QUATERNION    w, x, y, z
    radiance:base   FLOAT4        SH DC coefficients (r, g, b) and the opacity in 0..1, sigmoid(logit)
    radiance:sh_<k> FLOAT_VECTOR  SH coefficient k + 1 (r, g, b), k = 0 .. (degree + 1)^2 - 2

in the same SH basis as the INRIA files (our frame is kept: the up axis is the object's rotation, as for the
mesh splats). These are derived for display; bit-exact export comes from the raw INRIA attributes stored
beside them (f_dc_*, f_rest_*, opacity, scale_*, rot_*, extra_*, as on a splat mesh). A point cloud made by
Blender's own importers has only the native attributes: it is read back from them (log / logit of float32
values, so not bit-exact).

The numpy part (`native_attributes`, `arrays_from_native`) is bpy-free; bpy is imported inside functions.
"""

from __future__ import annotations

import numpy as np

from . import attributes as A

NATIVE_TYPE = "GAUSSIAN_SPLAT"
BASE = "radiance:base"
SH_PREFIX = "radiance:sh_"
PROP = "splatbrush"  # the same object custom property as splat meshes (splats.PROP)


def native_attributes(arrays) -> dict[str, tuple[str, np.ndarray]]:
    """{name: (Blender data type, [N, width] float32)}: what Blender draws its native splats from."""
    n = arrays.num_gaussians
    quats = np.asarray(arrays.quats, dtype=np.float64)
    norm = np.linalg.norm(quats, axis=1, keepdims=True)
    quats = np.where(norm > 0, quats / np.where(norm > 0, norm, 1.0), np.array([1.0, 0.0, 0.0, 0.0]))
    alpha = 1.0 / (1.0 + np.exp(-np.asarray(arrays.opacity_logits, dtype=np.float64)))
    sh = np.asarray(arrays.sh, dtype=np.float32)
    out = {
        "scale": ("FLOAT_VECTOR", np.exp(np.asarray(arrays.log_scales, dtype=np.float64))),
        "rotation": ("QUATERNION", quats),
        BASE: ("FLOAT4", np.concatenate([sh[:, 0], alpha.reshape(n, 1)], axis=1)),
    }
    for k in range(sh.shape[1] - 1):
        out[f"{SH_PREFIX}{k}"] = ("FLOAT_VECTOR", sh[:, k + 1])
    return {name: (kind, np.ascontiguousarray(v, dtype=np.float32)) for name, (kind, v) in out.items()}


def arrays_from_native(positions: np.ndarray, values: dict[str, np.ndarray], extra_order=None):
    """SplatArrays from a native splat point cloud's attributes: the raw INRIA ones when present (bit-exact),
    else derived from the native ones (scale -> log, opacity -> logit). ValueError names what is missing."""
    raw = {name: v for name, v in values.items() if v.ndim == 1}
    if all(name in raw for name in A.gaussian_attribute_names(0)):
        return A.unpack(positions, raw, extra_order)
    missing = [name for name in ("scale", "rotation", BASE) if name not in values]
    if missing:
        raise ValueError(
            f"not a Gaussian splat point cloud: attributes {', '.join(missing)} are missing "
            "(neither the raw f_dc_*/opacity/scale_*/rot_* nor Blender's native ones)"
        )
    from ._shared import shared_module

    n = positions.shape[0]
    k = 1 + sum(1 for name in values if name.startswith(SH_PREFIX))
    if k not in (1, 4, 9, 16):
        raise ValueError(f"found {k - 1} {SH_PREFIX}* attributes; a 3DGS point cloud has 0, 3, 8 or 15")
    sh = np.empty((n, k, 3), dtype=np.float32)
    base = values[BASE].astype(np.float64)
    sh[:, 0] = base[:, :3]
    for j in range(1, k):
        sh[:, j] = values[f"{SH_PREFIX}{j - 1}"]
    alpha = np.clip(base[:, 3], 1e-7, 1 - 1e-7)
    scale = np.maximum(values["scale"].astype(np.float64), 1e-30)
    return shared_module("splatfile").SplatArrays(
        means=np.asarray(positions, dtype=np.float32).reshape(n, 3),
        quats=np.asarray(values["rotation"], dtype=np.float32).reshape(n, 4),
        log_scales=np.log(scale).astype(np.float32),
        opacity_logits=np.log(alpha / (1 - alpha)).astype(np.float32),
        sh=sh,
    )


# --------------------------------------------------------------------------------------------- bpy side
WIDTH = {"FLOAT": 1, "FLOAT_VECTOR": 3, "QUATERNION": 4, "FLOAT4": 4, "FLOAT_COLOR": 4}


def supported() -> bool:
    """Does this Blender have native Gaussian splat point clouds (5.3+)?"""
    import bpy

    prop = bpy.types.PointCloud.bl_rna.properties.get("type")
    return prop is not None and NATIVE_TYPE in prop.enum_items.keys()


def is_native_splat_object(obj) -> bool:
    if obj is None or obj.type != "POINTCLOUD":
        return False
    return getattr(obj.data, "type", "") == NATIVE_TYPE


def write_native(pointcloud, arrays) -> None:
    """Store `arrays` on a point cloud: positions, the raw INRIA attributes, the native display ones."""
    arrays.check()
    n = arrays.num_gaussians
    if len(pointcloud.points) != n:
        pointcloud.resize(n)
    means, raw = A.pack(arrays)
    A.set_point_attribute(pointcloud, "position", "FLOAT_VECTOR", means)
    for name in [a.name for a in pointcloud.attributes if a.name.startswith(SH_PREFIX)]:
        pointcloud.attributes.remove(pointcloud.attributes[name])  # a lower SH degree than before
    for name, values in raw.items():
        A.set_point_attribute(pointcloud, name, "FLOAT", values)
    for name, (kind, values) in native_attributes(arrays).items():
        A.set_point_attribute(pointcloud, name, kind, values)
    pointcloud.type = NATIVE_TYPE
    pointcloud.update_tag()


def create_native_object(context, arrays, name: str, source: str = "", collection=None):
    """Link a new native splat object (Blender 5.3+) holding `arrays` into `collection` (default: active)."""
    import bpy

    if not supported():
        raise RuntimeError(
            f"this Blender ({bpy.app.version_string}) has no native Gaussian splats (Blender 5.3+): "
            "import with the Geometry Nodes display instead"
        )
    pointcloud = bpy.data.pointclouds.new(name)
    write_native(pointcloud, arrays)
    obj = bpy.data.objects.new(name, pointcloud)
    obj[PROP] = {"extras": list(arrays.extra), "source": source, "sh_degree": arrays.sh_degree}
    (collection or context.collection).objects.link(obj)
    return obj


def arrays_from_native_object(obj):
    """The Gaussians of a native splat object (object-local coordinates)."""
    if not is_native_splat_object(obj):
        raise ValueError(f"{obj.name!r} is not a Gaussian splat point cloud (Blender 5.3+ native splats)")
    pointcloud = obj.data
    n = len(pointcloud.points)
    if n == 0:
        raise ValueError(f"point cloud {pointcloud.name!r} has no points")
    values: dict[str, np.ndarray] = {}
    for attr in pointcloud.attributes:
        width = WIDTH.get(attr.data_type)
        if attr.domain != "POINT" or attr.data_type not in A.FOREACH_KEY or width is None:
            continue
        buf = np.empty(n * width, dtype=np.float32)
        attr.data.foreach_get(A.FOREACH_KEY[attr.data_type], buf)
        values[attr.name] = buf if width == 1 else buf.reshape(n, width)
    positions = values.pop("position")
    meta = obj.get(PROP, {})
    extras = list(meta.get("extras", [])) if hasattr(meta, "get") else []
    return arrays_from_native(positions, values, extras)


def native_positions(obj) -> np.ndarray:
    """[N, 3] float32 positions of a native splat object (for bounds)."""
    n = len(obj.data.points)
    buf = np.empty(n * 3, dtype=np.float32)
    obj.data.attributes["position"].data.foreach_get("vector", buf)
    return buf.reshape(n, 3)


# ------------------------------------------------------------------------------------- toward a camera
def _matrix_to_quat(r: np.ndarray) -> np.ndarray:
    """[N, 3, 3] rotation matrices -> [N, 4] unit quaternions w, x, y, z (w >= 0)."""
    m = r
    trace = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cand = np.stack(
        [
            np.stack([1 + trace, m[:, 2, 1] - m[:, 1, 2],
                      m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], 1),
            np.stack([m[:, 2, 1] - m[:, 1, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
                      m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0]], 1),
            np.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0],
                      1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], m[:, 1, 2] + m[:, 2, 1]], 1),
            np.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1],
                      1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], 1),
        ],
        axis=1,
    )  # fmt: skip
    best = np.argmax(np.stack([trace, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], 1), axis=1)
    q = cand[np.arange(len(m)), best]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q * np.where(q[:, :1] < 0, -1.0, 1.0)


def blurred_native(arrays, view: dict, blur_px: float = 0.3) -> dict[str, np.ndarray]:
    """`scale` and `rotation` for Blender's native splats that draw, from the camera `view` (the engine's
    dict: world_to_camera, fx, fy in the object's space), what the 3DGS renderer draws: it adds `blur_px`
    px^2 to every projected covariance, Blender's native drawing adds nothing, which thins sub-pixel splats.
    Each 3D covariance gets blur_px x (depth / focal)^2 of isotropic variance, then is factored again."""
    w2c = np.asarray(view["world_to_camera"], dtype=np.float64)
    focal = 0.5 * (float(view["fx"]) + float(view["fy"]))
    depth = np.asarray(arrays.means, dtype=np.float64) @ w2c[2, :3] + w2c[2, 3]
    extra = blur_px * (np.maximum(depth, 1e-6) / focal) ** 2
    r = A.quat_to_matrix(arrays.quats)  # [N, 3, 3]
    var = np.exp(2.0 * np.asarray(arrays.log_scales, dtype=np.float64))
    cov = (r * var[:, None, :]) @ np.transpose(r, (0, 2, 1)) + extra[:, None, None] * np.eye(3)
    evals, evecs = np.linalg.eigh(cov)
    evecs[:, :, 2] *= np.sign(np.linalg.det(evecs))[:, None]  # a rotation, not a reflection
    return {
        "scale": np.sqrt(np.maximum(evals, 0.0)).astype(np.float32),
        "rotation": _matrix_to_quat(evecs).astype(np.float32),
    }


SH_C0 = 0.28209479177387814


def raw_view_base(arrays) -> np.ndarray:
    """[N, 4] `radiance:base` for view transform Raw: Blender decodes the SH colour from sRGB to linear and
    blends linear values, the 3DGS renderer blends the sRGB values themselves; with DC coefficients whose
    decoding gives back the renderer's colour (0.5 + C0 f_dc, clamped to 0..1) and view transform Raw,
    Blender blends what 3DGS blends. View-independent: the higher SH bands are left out (exact for SH 0)."""
    col = np.clip(0.5 + SH_C0 * np.asarray(arrays.sh, dtype=np.float64)[:, 0], 0.0, 1.0)
    enc = np.where(col <= 0.0031308, col * 12.92, 1.055 * col ** (1 / 2.4) - 0.055)
    alpha = 1.0 / (1.0 + np.exp(-np.asarray(arrays.opacity_logits, dtype=np.float64)))
    return np.concatenate([(enc - 0.5) / SH_C0, alpha[:, None]], axis=1).astype(np.float32)


def bake_native_for_view(obj, arrays, view: dict, blur_px: float = 0.3, raw_view: bool = False) -> None:
    """Rewrite a native splat object's `scale` / `rotation` to draw as the 3DGS renderer does from `view`
    (see `blurred_native`); with `raw_view` also its colours for view transform Raw (`raw_view_base`, the
    higher SH bands zeroed) and the scene's view transform set to Raw. The raw attributes, and so the
    export, are untouched; importing again (or `write_native`) restores Blender's own SH evaluation."""
    import bpy

    for name, values in blurred_native(arrays, view, blur_px).items():
        A.set_point_attribute(obj.data, name, "FLOAT_VECTOR" if name == "scale" else "QUATERNION", values)
    if raw_view:
        A.set_point_attribute(obj.data, BASE, "FLOAT4", raw_view_base(arrays))
        zeros = np.zeros((arrays.num_gaussians, 3), dtype=np.float32)
        for k in range(arrays.sh.shape[1] - 1):
            A.set_point_attribute(obj.data, f"{SH_PREFIX}{k}", "FLOAT_VECTOR", zeros)
        bpy.context.scene.view_settings.view_transform = "Raw"
    obj.data.update_tag()
