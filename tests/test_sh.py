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


def _fibonacci_sphere(n: int) -> torch.Tensor:  # [n, 3] near-uniform unit directions (equal-area cells)
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    r = torch.sqrt(1 - z * z)
    phi = math.pi * (1 + math.sqrt(5)) * i
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=1)


def test_real_sh_basis_is_orthonormal():
    dirs = _fibonacci_sphere(10_000)
    b = _basis(dirs)
    gram = (b.T @ b) * (4 * math.pi / dirs.shape[0])  # quadrature of the products over the sphere
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=1e-3)


def test_degree_zero_is_dc_and_lower_degrees_ignore_higher_bands():
    sh = torch.randn(7, 16, 3, dtype=torch.float64)
    dirs = torch.nn.functional.normalize(torch.randn(7, 3, dtype=torch.float64), dim=1)
    assert torch.allclose(eval_sh(0, sh, dirs), C0 * sh[:, 0])
    sh2 = sh.clone()
    sh2[:, 4:] = 0
    assert torch.allclose(eval_sh(1, sh, dirs), eval_sh(3, sh2[:, :16], dirs))
