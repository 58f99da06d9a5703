"""gsplat's CUDA rasterizer behind the common render contract.

    rasterize_gsplat(scene, camera, background [3], sh_degree=None) -> RenderOutput

Uses `gsplat.rasterization` in "classic" mode with the same EWA constants as the torch backends
(eps2d 0.3, near 0.01, far 1e10) and "RGB+ED" (colour plus expected depth). Where gsplat's own constants
differ from ours (see docs/rendering.md): it clamps alpha at 0.999 instead of 0.99, and it culls a
Gaussian's tiles with its own screen radius, so pictures agree closely but not bit for bit.
gsplat is an optional dependency (`pip install gsplat`, needs CUDA); imports happen inside the function.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..cameras.camera import Camera
from ..scene.gaussians import GaussianScene
from .projection import EPS2D, FAR_PLANE, NEAR_PLANE, camera_tensors
from .types import RenderOutput


def rasterize_gsplat(
    scene: GaussianScene,
    camera: Camera,
    background: Tensor,  # [3]
    sh_degree: int | None = None,
    packed: bool = False,
) -> RenderOutput:
    """Render with gsplat on the scene's CUDA device; differentiable w.r.t. every scene tensor."""
    from . import RenderError

    try:
        from gsplat import rasterization
    except Exception as exc:  # ImportError, or gsplat failing to load/compile its CUDA extension
        raise RenderError(
            f"the gsplat backend needs the gsplat package with CUDA ({type(exc).__name__}: {exc}); "
            "install it with `pip install gsplat` on a CUDA machine, or use backend='torch'"
        ) from exc
    if not torch.cuda.is_available():
        raise RenderError("the gsplat backend needs a CUDA GPU; none is available, use backend='torch'")
    if scene.device.type != "cuda":
        raise RenderError(
            f"the gsplat backend renders CUDA scenes, this one is on {scene.device}; "
            "move it with scene.to('cuda') or use backend='torch'"
        )

    # gsplat computes in float32; other dtypes are cast (differentiably) and the outputs cast back
    out_dtype, device, dtype = scene.means.dtype, scene.device, torch.float32
    deg = scene.sh_degree if sh_degree is None else min(sh_degree, scene.sh_degree)
    k = (deg + 1) ** 2
    viewmat, K = camera_tensors(camera, device, dtype)

    def f32(t: Tensor) -> Tensor:
        return t.to(dtype)

    # RGB only: with "RGB+ED" gsplat appends the depth channel's background (0) itself
    bg = background.to(device=device, dtype=dtype).reshape(3)

    colors, alphas, _meta = rasterization(
        means=f32(scene.means),
        quats=f32(scene.quats),  # wxyz; gsplat normalises them
        scales=torch.exp(f32(scene.log_scales)),
        opacities=torch.sigmoid(f32(scene.opacity_logits)),
        colors=f32(scene.sh[:, :k]),  # [N, K, 3] SH coefficients; gsplat adds 0.5 and clamps at 0
        viewmats=viewmat[None],  # [1, 4, 4]
        Ks=K[None],  # [1, 3, 3]
        width=camera.width,
        height=camera.height,
        near_plane=NEAR_PLANE,
        far_plane=FAR_PLANE,
        eps2d=EPS2D,
        sh_degree=deg,
        packed=packed,
        backgrounds=bg[None],  # [1, 3]
        render_mode="RGB+ED",
        rasterize_mode="classic",
    )
    alpha = alphas[0, ..., 0]  # [H, W]
    image = colors[0, ..., :3]
    # gsplat's "ED" is already sum(w z) / alpha; keep our convention of 0 where nothing was drawn
    depth = torch.where(alpha > 0, colors[0, ..., 3], torch.zeros_like(alpha))
    return RenderOutput(image=image.to(out_dtype), alpha=alpha.to(out_dtype), depth=depth.to(out_dtype))
