"""Differentiable rendering: one contract, several backends.

    render(scene, camera, background=None, backend="auto") -> RenderOutput
        (image [H,W,3], alpha [H,W], depth [H,W])

Backends (all follow gsplat's "classic" conventions, see `projection.py`):
    "torch"      the tiled pure-PyTorch rasterizer (CPU, or any device); the default without CUDA
    "gsplat"     gsplat's CUDA `rasterization`; the default for CUDA scenes when gsplat is installed
    "reference"  dense brute force, every Gaussian at every pixel; for tests only
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..cameras.camera import Camera
from ..scene.gaussians import GaussianScene
from .types import RenderOutput

BACKENDS = ("auto", "torch", "gsplat", "reference")


class RenderError(RuntimeError):
    """A render could not be done (unknown or unavailable backend, bad background)."""


def gsplat_available() -> bool:
    try:
        import gsplat  # noqa: F401
    except Exception:  # gsplat raises various errors when its CUDA build is missing
        return False
    return torch.cuda.is_available()


def choose_backend(scene: GaussianScene, backend: str = "auto") -> str:
    if backend not in BACKENDS:
        raise RenderError(f"unknown render backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if scene.device.type == "cuda" and gsplat_available():
        return "gsplat"
    return "torch"


def _background_tensor(background, scene: GaussianScene) -> Tensor:
    if background is None:
        background = (0.0, 0.0, 0.0)
    bg = torch.as_tensor(background, dtype=scene.means.dtype, device=scene.device).reshape(-1)
    if bg.shape != (3,):
        raise RenderError(f"background must be 3 values (RGB), got shape {tuple(bg.shape)}")
    return bg


def render(
    scene: GaussianScene,
    camera: Camera,
    background=None,
    backend: str = "auto",
    sh_degree: int | None = None,
) -> RenderOutput:
    """Render `scene` from `camera`. Differentiable with respect to every scene tensor.

    background: RGB in [0, 1] (tuple or tensor [3]); black when None.
    sh_degree:  use at most this many SH bands (default: all the scene has).
    """
    name = choose_backend(scene, backend)
    bg = _background_tensor(background, scene)
    if name == "reference":
        from .reference import rasterize_reference

        return rasterize_reference(scene, camera, bg, sh_degree)
    if name == "gsplat":
        from .gsplat_backend import rasterize_gsplat

        return rasterize_gsplat(scene, camera, bg, sh_degree)
    from .torch_rasterizer import rasterize_torch

    return rasterize_torch(scene, camera, bg, sh_degree)


__all__ = ["BACKENDS", "RenderError", "RenderOutput", "choose_backend", "gsplat_available", "render"]
