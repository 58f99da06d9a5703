"""Geometric multi-view consistency: the colour difference of the same surface point seen in two views.

For an ordered pair of views (A, B), every object pixel of A (alpha >= alpha_min) is back-projected from its
pixel centre with A's rendered expected depth (camera-space z, `RenderOutput.depth`), projected into B, and B
is sampled there bilinearly (sub-pixel). A correspondence is valid when the point lies in front of B and
inside B's image, B's four bilinear taps are all object pixels, and B's bilinearly sampled depth agrees with
the point's depth in B: |depth_B - z_B| <= rel_depth_tol * z_B (points hidden in B by something nearer fail
this occlusion test). The error is the mean absolute RGB difference (per channel, 0..1) over the valid
correspondences of every pair of a range:

    short range   each view with its nearest view by viewing direction (adjacent views)
    long range    each view with the view whose direction is closest to 90 degrees away (within a window)

The correspondences depend on geometry only, so one set serves the original and the stylized images.
Cost: one pass over each view's pixels per range, O(views x pixels); nothing depends on the scene size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..cameras.camera import Camera


@dataclass
class ConsistencyConfig:
    alpha_min: float = 0.9
    """Object pixels: alpha >= this, in A (the source pixel) and at all four bilinear taps in B."""
    rel_depth_tol: float = 0.02
    """Occlusion test: B's sampled depth within this fraction of the point's depth in B."""
    near: float = 0.01
    """Points closer to B than this (camera z) are not visible in B (the renderer drops z <= 0.01)."""
    long_range_deg: float = 90.0
    """Target angle between the viewing directions of a long-range pair."""
    long_range_window_deg: float = 30.0
    """A view has a long-range partner only when some view is within long_range_deg +- this."""


@dataclass
class Correspondences:
    """Valid correspondences of an ordered view pair (A, B)."""

    index_a: Tensor  # [M] long, flat pixel index y * W_A + x in A
    uv_b: Tensor  # [M, 2] float64 pixel coordinates in B (pixel centres at integer + 0.5)
    object_pixels_a: int  # how many object pixels A had (coverage = M / object_pixels_a)


def project_points(points: Tensor, cam: Camera) -> tuple[Tensor, Tensor]:
    """World points [P, 3] -> (pixel coordinates uv [P, 2], camera depth z [P]), float64, OpenCV pinhole:
    u = fx x / z + cx, v = fy y / z + cy (the renderer's convention: pixel (i, j)'s centre is at
    (i + 0.5, j + 0.5))."""
    w2c = torch.as_tensor(cam.world_to_camera, dtype=torch.float64, device=points.device)
    pc = points.double() @ w2c[:3, :3].T + w2c[:3, 3]
    z = pc[:, 2]
    zs = torch.where(z.abs() > 1e-12, z, torch.full_like(z, 1e-12))
    uv = torch.stack([cam.fx * pc[:, 0] / zs + cam.cx, cam.fy * pc[:, 1] / zs + cam.cy], dim=-1)
    return uv, z


def unproject_pixels(index: Tensor, depth: Tensor, cam: Camera) -> Tensor:
    """World points [M, 3] (float64) of the centres of the flat pixels `index` [M] at camera depths
    `depth` [M] (camera-space z, as the renderer's expected depth)."""
    x = (index % cam.width).double() + 0.5
    y = torch.div(index, cam.width, rounding_mode="floor").double() + 0.5
    z = depth.double()
    pc = torch.stack([(x - cam.cx) / cam.fx * z, (y - cam.cy) / cam.fy * z, z], dim=-1)
    c2w = torch.as_tensor(cam.camera_to_world, dtype=torch.float64, device=pc.device)
    return pc @ c2w[:3, :3].T + c2w[:3, 3]


def bilinear_taps(uv: Tensor, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """The four taps of bilinear sampling at pixel coordinates uv [P, 2] (centres at +0.5): (flat indices
    [P, 4] long, weights [P, 4] float64 summing to 1, inside [P] bool: all four taps inside the image).
    Indices of points outside are clamped (their weights are meaningless; use `inside`)."""
    if height < 2 or width < 2:
        raise ValueError(f"bilinear sampling needs an image of at least 2x2 pixels, got {width}x{height}")
    x, y = uv[:, 0].double() - 0.5, uv[:, 1].double() - 0.5
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    x0 = torch.floor(x).clamp(0, width - 2)
    y0 = torch.floor(y).clamp(0, height - 2)
    fx, fy = (x - x0).clamp(0, 1), (y - y0).clamp(0, 1)
    x0, y0 = x0.long(), y0.long()
    i00 = y0 * width + x0
    idx = torch.stack([i00, i00 + 1, i00 + width, i00 + width + 1], dim=-1)
    w = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], dim=-1)
    return idx, w, inside


def sample_bilinear(image: Tensor, uv: Tensor) -> Tensor:
    """Bilinear samples [C, P] of image [C, H, W] at pixel coordinates uv [P, 2] (centres at +0.5; points
    must lie inside, see `bilinear_taps`)."""
    c, h, w = image.shape
    idx, wts, _ = bilinear_taps(uv, h, w)
    flat = image.reshape(c, -1).double()
    return (flat[:, idx] * wts).sum(-1)


def correspondences(
    depth_a: Tensor,  # [H_A, W_A]
    alpha_a: Tensor,  # [H_A, W_A]
    cam_a: Camera,
    depth_b: Tensor,  # [H_B, W_B]
    alpha_b: Tensor,  # [H_B, W_B]
    cam_b: Camera,
    config: ConsistencyConfig | None = None,
) -> Correspondences:
    """The occlusion-tested sub-pixel correspondences from A's object pixels into B (see the module doc)."""
    cfg = config or ConsistencyConfig()
    da, aa = depth_a.reshape(-1).double().cpu(), alpha_a.reshape(-1).double().cpu()
    idx_a = torch.nonzero((aa >= cfg.alpha_min) & (da > 0)).squeeze(1)
    uv, z = project_points(unproject_pixels(idx_a, da[idx_a], cam_a), cam_b)
    taps, wts, inside = bilinear_taps(uv, cam_b.height, cam_b.width)
    ab = alpha_b.reshape(-1).double().cpu()[taps]  # [M, 4]
    db = (depth_b.reshape(-1).double().cpu()[taps] * wts).sum(-1)
    ok = inside & (z > cfg.near) & (ab.min(dim=-1).values >= cfg.alpha_min)
    ok &= (db - z).abs() <= cfg.rel_depth_tol * z
    return Correspondences(idx_a[ok], uv[ok], int(idx_a.numel()))


def colour_difference_sum(image_a: Tensor, image_b: Tensor, corr: Correspondences) -> float:
    """Sum over the correspondences of the mean absolute RGB difference (image_a, image_b: [3, H, W])."""
    if corr.index_a.numel() == 0:
        return 0.0
    col_a = image_a.reshape(image_a.shape[0], -1).double().cpu()[:, corr.index_a]
    col_b = sample_bilinear(image_b.double().cpu(), corr.uv_b)
    return float((col_a - col_b).abs().mean(dim=0).sum())


def view_pairs(cameras: Sequence[Camera], config: ConsistencyConfig | None = None) -> dict:
    """{"short": [(i, j, angle_deg)], "long": [...]}: each view i with its nearest view j by the angle
    between viewing directions, and with the view closest to long_range_deg (when within the window)."""
    cfg = config or ConsistencyConfig()
    out: dict[str, list[tuple[int, int, float]]] = {"short": [], "long": []}
    if len(cameras) < 2:
        return out
    f = np.stack([c.forward / np.linalg.norm(c.forward) for c in cameras])
    ang = np.degrees(np.arccos(np.clip(f @ f.T, -1.0, 1.0)))  # [V, V]
    np.fill_diagonal(ang, np.inf)
    for i in range(len(cameras)):
        j = int(np.argmin(ang[i]))  # ties: the lowest index
        out["short"].append((i, j, float(ang[i, j])))
        off = np.abs(ang[i] - cfg.long_range_deg)
        k = int(np.argmin(off))
        if off[k] <= cfg.long_range_window_deg:
            out["long"].append((i, k, float(ang[i, k])))
    return out


def _view(x: Tensor, dims: int) -> Tensor:
    """Drop leading singleton axes until `dims` remain ([1, 3, H, W] -> [3, H, W], [1, 1, H, W] -> [H, W])."""
    while x.dim() > dims and x.shape[0] == 1:
        x = x[0]
    if x.dim() != dims:
        raise ValueError(f"expected a {dims}-d view (after dropping leading 1s), got shape {tuple(x.shape)}")
    return x


def consistency_errors(
    images: Mapping[str, Sequence[Tensor]],  # name -> per view [3, H, W] (or [1, 3, H, W])
    depths: Sequence[Tensor],  # per view [H, W] expected depth
    alphas: Sequence[Tensor],  # per view [H, W] (or [1, 1, H, W])
    cameras: Sequence[Camera],
    config: ConsistencyConfig | None = None,
) -> dict[str, float | int]:
    """Short- and long-range consistency errors of every image set in `images` (same geometry: one set of
    correspondences). Keys, for r in (short, long): consistency_{r}_{name} (mean |RGB| difference, NaN when
    no correspondence), consistency_{r}_coverage (valid / object pixels), consistency_{r}_pairs,
    consistency_{r}_angle_deg (mean angle of the pairs)."""
    cfg = config or ConsistencyConfig()
    n = len(cameras)
    if not (len(depths) == len(alphas) == n and all(len(v) == n for v in images.values())):
        raise ValueError(
            f"consistency_errors: {n} cameras but {len(depths)} depths, {len(alphas)} alphas and "
            f"{ {k: len(v) for k, v in images.items()} } images"
        )
    out: dict[str, float | int] = {}
    for rng, pairs in view_pairs(cameras, cfg).items():
        sums = dict.fromkeys(images, 0.0)
        valid = total = 0
        for i, j, _ in pairs:
            corr = correspondences(
                _view(depths[i], 2), _view(alphas[i], 2), cameras[i],
                _view(depths[j], 2), _view(alphas[j], 2), cameras[j], cfg,
            )  # fmt: skip
            valid += int(corr.index_a.numel())
            total += corr.object_pixels_a
            for name, ims in images.items():
                sums[name] += colour_difference_sum(_view(ims[i], 3), _view(ims[j], 3), corr)
        for name in images:
            out[f"consistency_{rng}_{name}"] = sums[name] / valid if valid else float("nan")
        out[f"consistency_{rng}_coverage"] = valid / total if total else 0.0
        out[f"consistency_{rng}_pairs"] = len(pairs)
        angles = [a for *_, a in pairs]
        out[f"consistency_{rng}_angle_deg"] = float(np.mean(angles)) if angles else float("nan")
    return out
