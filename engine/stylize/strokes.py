"""Brush strokes in 3D: Gaussians grouped into elongated stroke cells that share one colour.

Placement-free texture statistics cannot make strokes on their own: every view asks for its own arrangement
on the same Gaussians and the requests average out. Here the arrangement is fixed in 3D, so every view sees
the same strokes: K stroke centres are drawn among the Gaussians (seeded); each stroke has a direction
tangent to a swirl around the scene's vertical axis, jittered; each Gaussian joins the stroke whose centre is
nearest under an anisotropic distance (distance across the stroke counts `aspect` times more than along it).
The optimized colour is then `stroke_colour[stroke_of[g]] + residual[g]`: the losses pick each stroke's
colour, the small residual keeps some per-Gaussian freedom (shading, edges).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..scene.gaussians import GaussianScene


def stroke_assignment(
    scene: GaussianScene,
    gaussians_per_stroke: float = 40.0,
    aspect: float = 4.0,
    seed: int = 0,
    up: Tensor | None = None,
    chunk: int = 8192,
) -> Tensor:
    """[N] long: the stroke index of each Gaussian (strokes numbered 0..K-1, K ~ N / gaussians_per_stroke)."""
    means = scene.means.detach().to("cpu", torch.float64)
    n = means.shape[0]
    k = max(1, min(n, round(n / max(gaussians_per_stroke, 1.0))))
    g = torch.Generator().manual_seed(int(seed) + 4242)
    centres_idx = torch.randperm(n, generator=g)[:k]
    centres = means[centres_idx]  # [K, 3]
    mid = means.median(dim=0).values
    axis = torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64) if up is None else up.double() / up.norm()
    # stroke directions: a swirl around the vertical axis through the middle, jittered
    radial = centres - mid
    t = torch.cross(axis.expand_as(radial), radial, dim=1)
    t = t + 0.35 * t.norm(dim=1, keepdim=True).clamp_min(1e-12) * torch.randn(
        k, 3, generator=g, dtype=torch.float64
    )
    bad = t.norm(dim=1) < 1e-12
    t[bad] = torch.randn(int(bad.sum()), 3, generator=g, dtype=torch.float64)
    t = t / t.norm(dim=1, keepdim=True)
    a2 = aspect * aspect
    out = torch.empty(n, dtype=torch.long)
    for s in range(0, n, chunk):
        d = means[s : s + chunk, None, :] - centres[None]  # [c, K, 3]
        along = (d * t[None]).sum(-1)  # [c, K]
        d2 = (d * d).sum(-1)
        dist = along * along + a2 * (d2 - along * along)
        out[s : s + chunk] = dist.argmin(dim=1)
    return out.to(scene.device)


def stroke_count(assign: Tensor) -> int:
    return int(assign.max()) + 1 if assign.numel() else 0


def mean_per_stroke(values: Tensor, assign: Tensor, k: int) -> Tensor:
    """[N, C] -> [K, C] average over each stroke's Gaussians."""
    sums = torch.zeros(k, values.shape[1], dtype=values.dtype, device=values.device).index_add(
        0, assign, values
    )
    counts = torch.bincount(assign, minlength=k).clamp_min(1).to(values.dtype)[:, None]
    return sums / counts


__all__ = ["stroke_assignment", "stroke_count", "mean_per_stroke", "math"]
