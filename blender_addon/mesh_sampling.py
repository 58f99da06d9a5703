"""Any triangle mesh -> Gaussians on its surface (pure numpy; the bpy side only gathers arrays).

Points are drawn area-weighted over the triangles, so density is uniform. Each Gaussian is a flat disc in
its triangle's plane: tangential sigma = `coverage` x the mean spacing sqrt(area / count), so neighbours
overlap and the surface is closed; normal sigma = `thickness` x the spacing. Colours (Blender linear RGB)
come, in order of preference, from an image texture (through the UVs), the colour attribute (interpolated
corner colours), or the material's base colour, and are stored as the SH DC term of sRGB colour as 3DGS
files do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .attributes import SH_C0, linear_to_srgb


@dataclass
class SurfaceSource:
    vertices: np.ndarray  # [V, 3] float, object-local coordinates
    triangles: np.ndarray  # [T, 3] int vertex indices
    triangle_colours: np.ndarray | None = None  # [T, 3] linear RGB (material base colour)
    corner_colours: np.ndarray | None = None  # [T, 3, 3] linear RGB per triangle corner (colour attribute)
    corner_uvs: np.ndarray | None = None  # [T, 3, 2] UV per triangle corner
    textures: list[np.ndarray] = field(
        default_factory=list
    )  # each [H, W, 3] linear RGB, row 0 = bottom (v=0)
    triangle_texture: np.ndarray | None = None  # [T] int index into `textures`, -1 for none


@dataclass
class SamplingConfig:
    count: int = 100_000
    """How many Gaussians to place on the surface."""
    coverage: float = 0.7
    """Tangential sigma as a multiple of the mean spacing between samples (0.5-1 closes the surface)."""
    thickness: float = 0.05
    """Sigma along the normal as a multiple of the spacing (flat discs)."""
    opacity: float = 0.95
    """Opacity of every Gaussian (0..1, exclusive)."""
    seed: int = 0
    """Random seed of the sampling."""


def triangle_areas(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:  # [T]
    v = np.asarray(vertices, dtype=np.float64)[np.asarray(triangles)]  # [T, 3, 3]
    return 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)


def matrices_to_quats(r: np.ndarray) -> np.ndarray:
    """[N, 3, 3] rotation matrices -> [N, 4] unit quaternions wxyz (w >= 0)."""
    m = np.asarray(r, dtype=np.float64)
    trace = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cand = np.stack(
        [
            np.stack(
                [1 + trace, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], 1
            ),
            np.stack(
                [
                    m[:, 2, 1] - m[:, 1, 2],
                    1 + 2 * m[:, 0, 0] - trace,
                    m[:, 0, 1] + m[:, 1, 0],
                    m[:, 0, 2] + m[:, 2, 0],
                ],
                1,
            ),
            np.stack(
                [
                    m[:, 0, 2] - m[:, 2, 0],
                    m[:, 0, 1] + m[:, 1, 0],
                    1 + 2 * m[:, 1, 1] - trace,
                    m[:, 1, 2] + m[:, 2, 1],
                ],
                1,
            ),
            np.stack(
                [
                    m[:, 1, 0] - m[:, 0, 1],
                    m[:, 0, 2] + m[:, 2, 0],
                    m[:, 1, 2] + m[:, 2, 1],
                    1 + 2 * m[:, 2, 2] - trace,
                ],
                1,
            ),
        ],
        axis=1,
    )  # [N, 4 candidates, 4]; candidate i has its i-th component = 4 * q_i^2 (largest is best conditioned)
    diag = np.stack([m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], 1)
    best = np.argmax(np.concatenate([1 + trace[:, None], 1 + 2 * diag - trace[:, None]], 1), axis=1)
    q = cand[np.arange(len(m)), best]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q * np.where(q[:, :1] < 0, -1.0, 1.0)


def _sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:  # nearest texel, repeat wrap
    h, w = texture.shape[:2]
    x = np.floor(np.mod(uv[:, 0], 1.0) * w).astype(np.int64).clip(0, w - 1)
    y = np.floor(np.mod(uv[:, 1], 1.0) * h).astype(np.int64).clip(0, h - 1)
    return texture[y, x, :3]


def sample_surface(source: SurfaceSource, config: SamplingConfig | None = None):
    """Sample `config.count` Gaussians on the mesh; returns SplatArrays (SH degree 0)."""
    from ._shared import shared_module

    config = config or SamplingConfig()
    if config.count <= 0:
        raise ValueError(f"count must be positive, got {config.count}")
    if not 0.0 < config.opacity < 1.0:
        raise ValueError(f"opacity must be in (0, 1), got {config.opacity}")
    verts = np.asarray(source.vertices, dtype=np.float64)
    tris = np.asarray(source.triangles, dtype=np.int64).reshape(-1, 3)
    areas = triangle_areas(verts, tris) if len(tris) else np.zeros(0)
    total = float(areas.sum())
    if len(tris) == 0 or total <= 0:
        raise ValueError("the mesh has no faces with area: add faces (or apply modifiers) before sampling")

    rng = np.random.default_rng(config.seed)
    n = int(config.count)
    tri = rng.choice(len(tris), size=n, p=areas / total)  # [N]
    r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
    bary = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], axis=1)  # [N, 3] uniform on the triangle
    corners = verts[tris[tri]]  # [N, 3 corners, 3]
    means = np.einsum("nc,ncd->nd", bary, corners)

    # frame: z = face normal, x = first edge, y = z cross x
    e1 = corners[:, 1] - corners[:, 0]
    normal = np.cross(e1, corners[:, 2] - corners[:, 0])
    z = normal / np.linalg.norm(normal, axis=1, keepdims=True)
    x = e1 / np.linalg.norm(e1, axis=1, keepdims=True)
    y = np.cross(z, x)
    quats = matrices_to_quats(np.stack([x, y, z], axis=2))  # columns are the local axes

    spacing = np.sqrt(total / n)
    log_scales = np.log(
        np.array([config.coverage * spacing, config.coverage * spacing, config.thickness * spacing])
    )

    colour = np.full((n, 3), 0.8)
    if source.triangle_colours is not None:
        colour = np.asarray(source.triangle_colours, dtype=np.float64)[tri, :3]
    if source.corner_colours is not None:
        cc = np.asarray(source.corner_colours, dtype=np.float64)[tri, :, :3]
        colour = np.einsum("nc,ncd->nd", bary, cc)
    if source.corner_uvs is not None and source.textures and source.triangle_texture is not None:
        tex_index = np.asarray(source.triangle_texture)[tri]
        uv = np.einsum("nc,ncd->nd", bary, np.asarray(source.corner_uvs, dtype=np.float64)[tri])
        for i, texture in enumerate(source.textures):
            sel = tex_index == i
            if sel.any():
                colour[sel] = _sample_texture(np.asarray(texture), uv[sel])
    dc = (linear_to_srgb(colour) - 0.5) / SH_C0

    SplatArrays = shared_module("splatfile").SplatArrays
    logit = float(np.log(config.opacity / (1 - config.opacity)))
    return SplatArrays(
        means=means.astype(np.float32),
        quats=quats.astype(np.float32),
        log_scales=np.broadcast_to(log_scales, (n, 3)).astype(np.float32),
        opacity_logits=np.full(n, logit, dtype=np.float32),
        sh=dc.astype(np.float32)[:, None, :],
    )
