"""A demo that needs no downloaded data: a procedurally built Gaussian object and a procedurally painted
style image (strong palette, curved brush strokes), both from a seed.

    scene = demo_scene()                 # a glazed torus on a small pedestal sphere, ~15k Gaussians
    style = demo_style_image()           # uint8 [384, 512, 3]: swirling strokes in a sunset palette
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .scene.gaussians import GaussianScene

SUNSET = ((18, 32, 92), (40, 78, 168), (242, 160, 40), (250, 214, 90), (196, 52, 60), (120, 40, 110))


def _frames_from_normals(normals: np.ndarray) -> np.ndarray:
    """Quaternions (wxyz) rotating +z onto each normal [N, 3]."""
    z = np.array([0.0, 0.0, 1.0])
    n = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    axis = np.cross(np.broadcast_to(z, n.shape), n)
    s = np.linalg.norm(axis, axis=1)
    c = n @ z
    angle = np.arctan2(s, c)
    axis = np.where(s[:, None] > 1e-9, axis / np.maximum(s, 1e-12)[:, None], np.array([1.0, 0.0, 0.0]))
    half = angle / 2
    return np.concatenate([np.cos(half)[:, None], axis * np.sin(half)[:, None]], axis=1)


def demo_scene(n_torus: int = 12000, n_sphere: int = 3000, seed: int = 0) -> GaussianScene:
    """A torus (major radius 1, minor 0.38, axis +y... lying flat, y is down) with a cream base colour and a
    pink glaze on its top half, resting on a pale blue sphere. Flat Gaussians tangent to the surfaces."""
    rng = np.random.default_rng(seed)
    R, r = 1.0, 0.38
    u = rng.uniform(0, 2 * np.pi, n_torus)
    v = rng.uniform(0, 2 * np.pi, n_torus)
    # torus around the y axis; the scene's "up" is -y (the orbit default), so the glaze is where y < 0
    x = (R + r * np.cos(v)) * np.cos(u)
    z = (R + r * np.cos(v)) * np.sin(u)
    y = -r * np.sin(v)
    pts_t = np.stack([x, y, z], 1)
    nrm_t = np.stack([np.cos(v) * np.cos(u), -np.sin(v), np.cos(v) * np.sin(u)], 1)
    cream = np.array([0.86, 0.74, 0.55])
    pink = np.array([0.93, 0.55, 0.70])
    glaze = (np.sin(v) > -0.15 + 0.12 * np.sin(5 * u)).astype(np.float64)[:, None]
    col_t = glaze * pink + (1 - glaze) * cream + rng.normal(0, 0.02, (n_torus, 3))

    w = rng.normal(size=(n_sphere, 3))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    rs = 0.55
    centre = np.array([0.0, 0.9, 0.0])
    pts_s = centre + rs * w
    col_s = np.array([0.55, 0.70, 0.85]) + rng.normal(0, 0.02, (n_sphere, 3))

    pts = np.concatenate([pts_t, pts_s])
    nrm = np.concatenate([nrm_t, w])
    col = np.clip(np.concatenate([col_t, col_s]), 0.02, 0.98)
    n = len(pts)
    spacing_t = math.sqrt(4 * np.pi**2 * R * r / n_torus)
    spacing_s = math.sqrt(4 * np.pi * rs**2 / n_sphere)
    tangent = np.concatenate([np.full(n_torus, spacing_t), np.full(n_sphere, spacing_s)]) * 0.9
    scales = np.stack([tangent, tangent, tangent * 0.15], 1) * rng.uniform(0.8, 1.2, (n, 1))
    quats = _frames_from_normals(nrm)
    f = torch.float32
    return GaussianScene.from_activated(
        means=torch.tensor(pts, dtype=f),
        quats=torch.tensor(quats, dtype=f),
        scales=torch.tensor(scales, dtype=f),
        opacities=torch.full((n,), 0.9, dtype=f),
        colors=torch.tensor(col, dtype=f),
    )


def demo_style_image(width: int = 512, height: int = 384, seed: int = 0, palette=SUNSET) -> np.ndarray:
    """A painting made of curved brush strokes that follow a swirling flow field, in a strong palette."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    pal = np.array(palette, dtype=np.float64)
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
    base_idx = ((np.sin(3 * xx + 2 * yy) + np.cos(4 * yy - xx)) * 1.5 + 3).astype(int) % len(pal)
    img = Image.fromarray(pal[base_idx].astype(np.uint8))
    img = img.filter(ImageFilter.GaussianBlur(6))
    draw = ImageDraw.Draw(img)
    centres = rng.uniform([0, 0], [width, height], (5, 2))

    def flow(p: np.ndarray) -> np.ndarray:
        d = np.zeros(2)
        for c in centres:
            off = p - c
            dist2 = off @ off + 400.0
            d += np.array([-off[1], off[0]]) / dist2 * 900.0
        d += np.array([1.0, 0.25])
        return d / (np.linalg.norm(d) + 1e-9)

    for _ in range(2600):
        p = rng.uniform([0, 0], [width, height])
        k = int(rng.integers(len(pal)))
        colour = np.clip(pal[k] + rng.normal(0, 18, 3), 0, 255)
        pts = [tuple(p)]
        for _ in range(int(rng.integers(4, 10))):
            p = p + flow(p) * rng.uniform(4, 7)
            pts.append(tuple(p))
        width_px = int(rng.integers(3, 7))
        draw.line(pts, fill=tuple(int(c) for c in colour), width=width_px, joint="curve")
        light = tuple(int(c) for c in np.clip(colour * 1.25 + 20, 0, 255))  # a highlight along the stroke
        draw.line(pts, fill=light, width=1)
    return np.asarray(img, dtype=np.uint8).copy()
