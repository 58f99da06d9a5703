"""Shared fixtures: the real data folder (skips when absent) and small random scenes/cameras."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cameras import Camera
from engine.scene import GaussianScene

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (../shared/data beside the repo)")
    return SHARED_DATA


def make_random_scene(
    n: int = 64, sh_degree: int = 0, seed: int = 0, dtype: torch.dtype = torch.float64, spread: float = 1.0
) -> GaussianScene:
    """n Gaussians in a cube of half-size `spread` around the origin, sized to overlap on screen."""
    g = torch.Generator().manual_seed(seed)
    k = (sh_degree + 1) ** 2
    return GaussianScene(
        means=(torch.rand(n, 3, generator=g, dtype=dtype) * 2 - 1) * spread,
        quats=torch.randn(n, 4, generator=g, dtype=dtype),
        log_scales=torch.log(torch.rand(n, 3, generator=g, dtype=dtype) * 0.15 * spread + 0.02 * spread),
        opacity_logits=torch.randn(n, generator=g, dtype=dtype) * 1.5,
        sh=torch.randn(n, k, 3, generator=g, dtype=dtype) * 0.8,
    )


def make_camera(
    width: int = 32, height: int = 24, distance: float = 4.0, azimuth_deg: float = 30.0
) -> Camera:
    a = np.radians(azimuth_deg)
    eye = np.array([distance * np.sin(a), -0.8, -distance * np.cos(a)])
    return Camera.look_at(eye, np.zeros(3), np.array([0.0, -1.0, 0.0]), 50.0, width, height)


@pytest.fixture
def random_scene() -> GaussianScene:
    return make_random_scene()


@pytest.fixture
def small_camera() -> Camera:
    return make_camera()
