"""Spherical harmonics: the basis functions we use are orthonormal on the sphere (so sign or constant errors
show up) and degree 0 is the INRIA DC colour."""

from __future__ import annotations

import math

import torch

from engine.render.sh import C0, eval_sh


def _basis(dirs: torch.Tensor) -> torch.Tensor:
    """[M, 3] unit directions -> [M, 16] values of each basis function (via one-hot coefficients)."""
    m = dirs.shape[0]
    cols = []
    for k in range(16):
        sh = torch.zeros(m, 16, 3, dtype=dirs.dtype)
        sh[:, k, 0] = 1.0
        cols.append(eval_sh(3, sh, dirs)[:, 0])
    return torch.stack(cols, dim=1)


def test_real_sh_basis_is_orthonormal():
    g = torch.Generator().manual_seed(0)
    dirs = torch.randn(400_000, 3, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    b = _basis(dirs)
    gram = (b.T @ b) * (4 * math.pi / dirs.shape[0])  # Monte-Carlo integral over the sphere
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=0.02)


def test_degree_zero_is_dc_and_lower_degrees_ignore_higher_bands():
    sh = torch.randn(7, 16, 3, dtype=torch.float64)
    dirs = torch.nn.functional.normalize(torch.randn(7, 3, dtype=torch.float64), dim=1)
    assert torch.allclose(eval_sh(0, sh, dirs), C0 * sh[:, 0])
    sh2 = sh.clone()
    sh2[:, 4:] = 0
    assert torch.allclose(eval_sh(1, sh, dirs), eval_sh(3, sh2[:, :16], dirs))
