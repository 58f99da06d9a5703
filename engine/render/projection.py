"""EWA projection of 3D Gaussians to screen-space 2D Gaussians, following gsplat's "classic" mode.

Shared by every pure-PyTorch path (the dense reference and the tiled CPU rasterizer) so that they differ only
in how they composite. All functions are differentiable with respect to every scene tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..cameras.camera import Camera
from ..scene.gaussians import GaussianScene
from .sh import eval_sh

# The conventions every backend shares (gsplat "classic" rasterization; see docs/rendering.md).
EPS2D = 0.3  # added to the 2D covariance diagonal (low-pass filter)
NEAR_PLANE = 0.01
FAR_PLANE = 1e10
ALPHA_MIN = 1.0 / 255.0  # a Gaussian whose alpha at a pixel is below this is skipped there
ALPHA_MAX = 0.99  # alpha is clamped here
T_MIN = 1e-4  # compositing stops before the Gaussian that would push transmittance to or below this
CLIP_MARGIN = 0.3  # gsplat clamps the Jacobian's x/y to 1.3x the field of view


@dataclass
class Projected:
    """Per-Gaussian screen-space quantities. Invalid Gaussians (behind the camera, degenerate) have
    `valid == False`; their other values are finite but meaningless."""

    means2d: Tensor  # [N, 2] pixel coordinates (pixel centres at integer + 0.5)
    conics: Tensor  # [N, 3] inverse 2D covariance (a, b, c): sigma = 0.5 (a dx^2 + c dy^2) + b dx dy
    depths: Tensor  # [N] camera-space z
    opacities: Tensor  # [N] after sigmoid
    colors: Tensor  # [N, 3] SH colour + 0.5, clamped at 0
    radii: Tensor  # [N] long int, conservative pixel radius of the alpha >= ALPHA_MIN footprint
    valid: Tensor  # [N] bool


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """[N, 4] wxyz (any norm) -> [N, 3, 3]."""
    q = quats / quats.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)


def camera_tensors(camera: Camera, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(viewmat [4, 4], K [3, 3]) as tensors."""
    viewmat = torch.as_tensor(camera.world_to_camera, device=device, dtype=dtype)
    K = torch.as_tensor(camera.K, device=device, dtype=dtype)
    return viewmat, K


def project(scene: GaussianScene, camera: Camera, sh_degree: int | None = None) -> Projected:
    """Project every Gaussian of `scene` into `camera`. Works in the scene's dtype and device."""
    dtype, device = scene.means.dtype, scene.means.device
    viewmat, _ = camera_tensors(camera, device, dtype)
    R, t = viewmat[:3, :3], viewmat[:3, 3]

    # 1. Camera-space means; the world covariance is M M^T with M = R_gaussian S.
    means_c = scene.means @ R.T + t  # [N, 3]
    rot = quat_to_rotmat(scene.quats)  # [N, 3, 3]
    M = rot * torch.exp(scene.log_scales)[:, None, :]  # [N, 3, 3]

    # 2. Perspective Jacobian with gsplat's field-of-view clamp.
    x, y, z = means_c.unbind(-1)
    z_safe = torch.where(z > NEAR_PLANE, z, torch.ones_like(z))
    fx, fy, cx, cy = camera.fx, camera.fy, camera.cx, camera.cy
    tan_fovx, tan_fovy = 0.5 * camera.width / fx, 0.5 * camera.height / fy
    lim_x_pos = (camera.width - cx) / fx + CLIP_MARGIN * tan_fovx
    lim_x_neg = cx / fx + CLIP_MARGIN * tan_fovx
    lim_y_pos = (camera.height - cy) / fy + CLIP_MARGIN * tan_fovy
    lim_y_neg = cy / fy + CLIP_MARGIN * tan_fovy
    rz = 1.0 / z_safe
    tx = z_safe * torch.clamp(x * rz, -lim_x_neg, lim_x_pos)
    ty = z_safe * torch.clamp(y * rz, -lim_y_neg, lim_y_pos)
    # cov2d = J R_cam M M^T R_cam^T J^T = P P^T with P = J R_cam M [N, 2, 3]; J's rows are
    # (fx/z, 0, -fx tx/z^2) and (0, fy/z, -fy ty/z^2). Elementwise: batched 3x3 matmuls are slow on CPU.
    JR0 = (fx * rz)[:, None] * R[0] + (-fx * tx * rz * rz)[:, None] * R[2]  # [N, 3] first row of J R_cam
    JR1 = (fy * rz)[:, None] * R[1] + (-fy * ty * rz * rz)[:, None] * R[2]
    P0 = (JR0[:, :, None] * M).sum(1)  # [N, 3]
    P1 = (JR1[:, :, None] * M).sum(1)

    # 3. Low-pass filter, inverse (conic), footprint radius.
    a = (P0 * P0).sum(1) + EPS2D
    b = (P0 * P1).sum(1)
    c = (P1 * P1).sum(1) + EPS2D
    det = a * c - b * b
    det_ok = det > 0
    det_safe = torch.where(det_ok, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)

    opacities = torch.sigmoid(scene.opacity_logits)
    with torch.no_grad():
        # alpha = o exp(-d^2/2) >= ALPHA_MIN  <=>  d^2 <= 2 ln(o / ALPHA_MIN); d in units of the major std.
        half_tr = 0.5 * (a + c)
        lam_max = half_tr + torch.sqrt(torch.clamp(half_tr * half_tr - det, min=0.01))
        extent = torch.sqrt(torch.clamp(2.0 * torch.log(opacities / ALPHA_MIN), min=0.0))
        radii = torch.ceil(extent * torch.sqrt(lam_max)).long()
        on_screen = (
            (means2d[:, 0] + radii > 0)
            & (means2d[:, 0] - radii < camera.width)
            & (means2d[:, 1] + radii > 0)
            & (means2d[:, 1] - radii < camera.height)
        )
        valid = (z > NEAR_PLANE) & (z < FAR_PLANE) & det_ok & (radii > 0) & on_screen
        radii = torch.where(valid, radii, torch.zeros_like(radii))

    # 4. View-dependent colour (direction from the camera centre to the Gaussian).
    deg = scene.sh_degree if sh_degree is None else min(sh_degree, scene.sh_degree)
    if deg > 0:
        campos = torch.as_tensor(np.asarray(camera.position), device=device, dtype=dtype)
        dirs = scene.means - campos
        dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    else:
        dirs = scene.means
    colors = torch.clamp_min(eval_sh(deg, scene.sh, dirs) + 0.5, 0.0)

    return Projected(means2d, conics, z, opacities, colors, radii, valid)
