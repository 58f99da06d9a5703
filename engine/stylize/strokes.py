"""Brush strokes in 3D: Gaussians grouped into elongated stroke cells that share one colour.

Placement-free texture statistics cannot make strokes on their own: every view asks for its own arrangement
on the same Gaussians and the requests average out. Here the arrangement is fixed in 3D, so every view sees
the same strokes: K ~ N / stroke_size stroke centres are drawn among the Gaussians (seeded); each stroke has
a direction tangent to a swirl around the scene's vertical axis, jittered; each Gaussian joins the stroke
whose centre is nearest under an anisotropic distance (distance across the stroke counts `aspect` times more
than along it):

    dist(g, k)^2 = along^2 + aspect^2 (|d|^2 - along^2),   d = x_g - c_k,  along = d . t_k

The optimized colour is then `stroke_colour[stroke_of[g]] + residual[g]`: the losses pick each stroke's
colour, the small residual keeps some per-Gaussian freedom (shading, edges).

Search (linear in N): the centres go into a k-d tree (scipy cKDTree). Since aspect >= 1, the anisotropic
distance is never below the Euclidean one, so for each Gaussian the best anisotropic distance D among its
q Euclidean-nearest centres is exact as soon as the q-th Euclidean distance is >= D (no centre further away
can beat it). Gaussians for which that test fails are searched again with 4q candidates, and so on; past
`MAX_CANDIDATES` a radius query of radius D settles the rest. The result is the same assignment as the
all-pairs search (same centres, directions and formula; only exact ties may resolve differently), in
O(N q log K) instead of O(N K).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..scene.gaussians import GaussianScene

FIRST_CANDIDATES = 8  # Euclidean-nearest centres tried first (times ~aspect / 4, see _first_q)
MAX_CANDIDATES = 512  # beyond this, the remaining Gaussians are settled by radius queries
CHUNK = 65_536  # Gaussians per query batch (bounds the [chunk, q] candidate arrays)


@dataclass
class StrokeCells:
    """Stroke cells of a scene: which cell each Gaussian is in, and each cell's centre and direction."""

    assign: Tensor  # [N] long, cell of each Gaussian (0..K-1)
    centres: Tensor  # [K] long, index of the Gaussian at each cell's centre
    directions: Tensor  # [K, 3] float64 unit stroke directions
    exhaustive: int = 0  # Gaussians that needed the radius-query fallback (diagnostics)

    @property
    def count(self) -> int:
        return int(self.centres.shape[0])

    def sizes(self) -> Tensor:  # [K] Gaussians per cell
        return torch.bincount(self.assign, minlength=self.count)


def _centres_and_directions(
    means: Tensor, k: int, aspect: float, seed: int, up: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Seeded centre indices [K] and unit directions [K, 3] (float64): a jittered swirl around `up`."""
    n = means.shape[0]
    g = torch.Generator().manual_seed(int(seed) + 4242)
    centres_idx = torch.randperm(n, generator=g)[:k]
    centres = means[centres_idx]  # [K, 3]
    mid = means.median(dim=0).values
    if up is None:
        axis = torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)
    else:
        up = torch.as_tensor(up, dtype=torch.float64).reshape(3)
        if not bool(torch.isfinite(up).all()) or float(up.norm()) < 1e-12:
            raise ValueError(f"strokes: up must be a non-zero finite 3-vector, got {up.tolist()}")
        axis = up / up.norm()
    radial = centres - mid
    t = torch.cross(axis.expand_as(radial), radial, dim=1)
    t = t + 0.35 * t.norm(dim=1, keepdim=True).clamp_min(1e-12) * torch.randn(
        k, 3, generator=g, dtype=torch.float64
    )
    bad = t.norm(dim=1) < 1e-12
    t[bad] = torch.randn(int(bad.sum()), 3, generator=g, dtype=torch.float64)
    return centres_idx, t / t.norm(dim=1, keepdim=True)


def _aniso(
    points: np.ndarray, dist2: np.ndarray, cand: np.ndarray, dirs: np.ndarray, ct: np.ndarray, a2: float
):
    """Anisotropic squared distances [n, q] of points [n, 3] to their candidate centres cand [n, q], given
    the squared Euclidean distances dist2 [n, q]: a2 |d|^2 - (a2 - 1) along^2, along = x . t_k - c_k . t_k
    (ct [K] holds c_k . t_k)."""
    along = np.einsum("nc,nqc->nq", points, dirs[cand]) - ct[cand]
    return a2 * dist2 - (a2 - 1.0) * (along * along)


def _first_q(aspect: float, k: int) -> int:
    return int(min(k, max(FIRST_CANDIDATES, math.ceil(2 * aspect))))


def _assign_chunk(points, tree, dirs, ct, a2, q0, k, workers) -> tuple[np.ndarray, int]:
    """Exact anisotropic-nearest centre of each point [n, 3]; returns (cells [n], # radius fallbacks)."""
    n = points.shape[0]
    out = np.empty(n, dtype=np.int64)
    todo = np.arange(n)
    q = q0
    while todo.size:
        dist, cand = tree.query(points[todo], k=q, workers=workers)
        dist, cand = dist.reshape(todo.size, q), cand.reshape(todo.size, q)
        aniso = _aniso(points[todo], dist * dist, cand, dirs, ct, a2)
        best = np.argmin(aniso, axis=1)
        best_d2 = aniso[np.arange(todo.size), best]
        # exact when no centre beyond the q-th Euclidean neighbour can be closer (aniso >= Euclidean)
        done = (q >= k) | (dist[:, -1] ** 2 >= best_d2)
        out[todo[done]] = cand[done, best[done]]
        todo, best_d2 = todo[~done], best_d2[~done]
        if todo.size and 4 * q > MAX_CANDIDATES:
            for i, r2 in zip(todo, best_d2, strict=True):  # rare: a radius query settles it exactly
                near = np.asarray(tree.query_ball_point(points[i], math.sqrt(r2) * (1 + 1e-9)))
                d2 = ((tree.data[near] - points[i]) ** 2).sum(1)
                a = _aniso(points[i : i + 1], d2[None], near[None], dirs, ct, a2)[0]
                out[i] = near[int(np.argmin(a))]
            return out, int(todo.size)
        q = min(4 * q, k)
    return out, 0


def build_cells(
    scene: GaussianScene,
    gaussians_per_stroke: float = 40.0,
    aspect: float = 4.0,
    seed: int = 0,
    up: Tensor | None = None,
    workers: int = -1,
) -> StrokeCells:
    """Stroke cells of `scene`: K = round(N / gaussians_per_stroke) cells, `aspect` times longer along their
    direction than across; `up` (default -y) is the swirl axis. Deterministic for a seed (any `workers`)."""
    from scipy.spatial import cKDTree

    if not aspect >= 1.0:
        raise ValueError(f"strokes: aspect must be >= 1 (length / width), got {aspect!r}")
    means = scene.means.detach().to("cpu", torch.float64)
    n = means.shape[0]
    if n == 0:
        raise ValueError("strokes: the scene has no Gaussians")
    k = max(1, min(n, round(n / max(gaussians_per_stroke, 1.0))))
    centres_idx, t = _centres_and_directions(means, k, aspect, seed, up)
    pts = means.numpy()
    centres, dirs = pts[centres_idx.numpy()], t.numpy()
    tree = cKDTree(centres)
    ct = np.einsum("kc,kc->k", centres, dirs)  # [K] c_k . t_k
    a2, q0 = float(aspect) ** 2, _first_q(aspect, k)
    out = np.empty(n, dtype=np.int64)
    fallback = 0
    for s in range(0, n, CHUNK):
        out[s : s + CHUNK], f = _assign_chunk(pts[s : s + CHUNK], tree, dirs, ct, a2, q0, k, workers)
        fallback += f
    assign = torch.from_numpy(out).to(scene.device)
    return StrokeCells(assign, centres_idx, t, fallback)


def stroke_assignment(
    scene: GaussianScene,
    gaussians_per_stroke: float = 40.0,
    aspect: float = 4.0,
    seed: int = 0,
    up: Tensor | None = None,
    chunk: int = 8192,  # kept for compatibility; the search batches by `CHUNK`
) -> Tensor:
    """[N] long: the stroke index of each Gaussian (strokes numbered 0..K-1, K ~ N / gaussians_per_stroke)."""
    return build_cells(scene, gaussians_per_stroke, aspect, seed, up).assign


def stroke_count(assign: Tensor) -> int:
    return int(assign.max()) + 1 if assign.numel() else 0


def mean_per_stroke(values: Tensor, assign: Tensor, k: int) -> Tensor:
    """[N, C] -> [K, C] average over each stroke's Gaussians."""
    sums = torch.zeros(k, values.shape[1], dtype=values.dtype, device=values.device).index_add(
        0, assign, values
    )
    counts = torch.bincount(assign, minlength=k).clamp_min(1).to(values.dtype)[:, None]
    return sums / counts


__all__ = ["StrokeCells", "build_cells", "stroke_assignment", "stroke_count", "mean_per_stroke"]
