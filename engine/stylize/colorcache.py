"""Colour-only re-rendering for fixed geometry: each view's compositing weights, computed once.

Stylization never moves a Gaussian, so for a fixed camera the render is LINEAR in the per-Gaussian colours:

    image[p] = sum_i w[p, i] colour[i] + (1 - alpha[p]) background

with w the usual alpha-compositing weights (alpha_i T_i). `ViewOperator` takes the
(pixel, Gaussian) pairs the torch rasterizer composites and their weights (`composited_pairs`, its own forward
pass, done once) as a sparse matrix, then re-renders any colours with one sparse product: milliseconds instead
of a full rasterization. The loop checks the operator against a full render of the same view before trusting
it, and falls back to the full renderer (with a one-line note) when the two differ.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from ..cameras.camera import Camera
from ..render.sh import eval_sh
from ..scene.gaussians import GaussianScene

MAX_ABS_DIFF = 2e-4  # an operator whose render differs more than this from the full render is not used


class ColorCacheError(RuntimeError):
    """The colour cache cannot be built or does not match the renderer (the loop falls back)."""


class ViewOperator:
    """The compositing weights of one view. `render(colors [N, 3]) -> image [3, H, W]`."""

    def __init__(self, scene: GaussianScene, camera: Camera):
        from ..render.torch_rasterizer import composited_pairs

        self.camera = camera
        self.height, self.width = H, W = camera.height, camera.width
        with torch.no_grad():
            pairs = composited_pairs(scene, camera)  # the rasterizer's own forward pass, once
        pix, gid, w = pairs.pix, pairs.gaussian, pairs.weight
        n, n_pix = scene.num_gaussians, H * W
        index = torch.stack([pix, gid])  # [2, M] (pixel y * W + x, Gaussian index in the scene)
        coo = torch.sparse_coo_tensor(index, w, (n_pix, n), check_invariants=False).coalesce()
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            self.matrix = coo.to_sparse_csr()  # [H*W, N] compositing weights
            self.matrix_t = coo.t().coalesce().to_sparse_csr()  # [N, H*W], for the backward
        self._num_pairs = int(w.numel())
        self.alpha = pairs.alpha  # [H, W]
        self.depth = pairs.depth  # [H, W]
        self.dirs = None
        if scene.sh_degree > 0:  # view directions, for view-dependent colours
            campos = torch.as_tensor(
                np.asarray(camera.position), device=scene.device, dtype=scene.means.dtype
            )
            dirs = scene.means - campos
            self.dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    @property
    def num_pairs(self) -> int:
        return self._num_pairs

    def colors(self, sh: Tensor) -> Tensor:
        """Per-Gaussian RGB [N, 3] of SH [N, K, 3] seen from this view (as the renderer: +0.5, clamp at 0)."""
        deg = {1: 0, 4: 1, 9: 2, 16: 3}[sh.shape[1]]
        if deg > 0 and self.dirs is None:
            raise ColorCacheError("view-dependent colours need the scene's SH degree > 0 at build time")
        dirs = self.dirs if deg > 0 else sh[:, 0]
        return torch.clamp_min(eval_sh(deg, sh, dirs) + 0.5, 0.0)

    def render(self, sh: Tensor, background: Tensor) -> Tensor:
        """[3, H, W] image of the scene with SH `sh` [N, K, 3]; differentiable w.r.t. `sh`."""
        out = _Composite.apply(self.colors(sh), self.matrix, self.matrix_t)  # [H*W, 3]
        img = out.reshape(self.height, self.width, 3) + (1.0 - self.alpha)[..., None] * background
        return img.permute(2, 0, 1)


class _Composite(torch.autograd.Function):
    """out = W c with a sparse W (and W^T kept for the backward: both are row-major products, which are
    deterministic on CPU)."""

    @staticmethod
    def forward(ctx, colors: Tensor, matrix: Tensor, matrix_t: Tensor) -> Tensor:
        ctx.matrix_t = matrix_t
        return matrix @ colors

    @staticmethod
    def backward(ctx, grad: Tensor):
        return ctx.matrix_t @ grad.contiguous(), None, None
