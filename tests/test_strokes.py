"""Stroke cells (engine/stylize/strokes.py): the k-d tree search against an all-pairs reference."""

from __future__ import annotations

import torch

from engine.scene.gaussians import GaussianScene
from engine.stylize.strokes import _centres_and_directions, build_cells, stroke_assignment, stroke_count


def _scene(n: int, seed: int = 0) -> GaussianScene:
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g)
    return GaussianScene(
        means=means,
        quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        log_scales=torch.full((n, 3), -5.0),
        opacity_logits=torch.zeros(n),
        sh=torch.rand(n, 1, 3, generator=g),
    )


def _brute_force(scene: GaussianScene, size: float, aspect: float, seed: int) -> torch.Tensor:
    means = scene.means.double()
    k = max(1, min(len(means), round(len(means) / size)))
    idx, t = _centres_and_directions(means, k, aspect, seed, None)
    d = means[:, None, :] - means[idx][None]  # [N, K, 3]
    along = (d * t[None]).sum(-1)
    dist = along**2 + aspect**2 * ((d * d).sum(-1) - along**2)
    return dist.argmin(1)


def test_tree_search_equals_all_pairs_reference():
    sc = _scene(3000)
    for size, aspect in [(40.0, 8.0), (20.0, 1.0), (10.0, 16.0)]:
        got = build_cells(sc, size, aspect, seed=3).assign
        ref = _brute_force(sc, size, aspect, 3)
        assert (got == ref).float().mean() > 0.999  # exact up to float ties


def test_every_gaussian_assigned_sizes_and_elongation():
    sc = _scene(20000, seed=1)
    cells = build_cells(sc, 80.0, 8.0, seed=0)
    assert cells.assign.shape == (20000,) and int(cells.assign.min()) >= 0
    assert stroke_count(cells.assign) == cells.count == 250
    med = float(cells.sizes().double().median())
    assert 40 <= med <= 120
    # principal axis of each big cell's members vs its stroke direction, and length/width ratio
    cos, ratio = [], []
    for c in range(cells.count):
        pts = sc.means[cells.assign == c].double()
        if len(pts) < 30:
            continue
        ev, evec = torch.linalg.eigh(torch.cov(pts.T))
        cos.append(float((evec[:, -1] @ cells.directions[c]).abs()))
        ratio.append(float((ev[-1] / ev[0]).sqrt()))
    assert torch.tensor(cos).median() > 0.9
    assert torch.tensor(ratio).median() > 2.5


def test_deterministic_with_the_seed():
    sc = _scene(5000)
    a = stroke_assignment(sc, 50.0, 6.0, seed=0)
    assert torch.equal(a, stroke_assignment(sc, 50.0, 6.0, seed=0))
    assert not torch.equal(a, stroke_assignment(sc, 50.0, 6.0, seed=1))
