"""`GaussianScene`: the one in-memory form of a 3DGS scene.

Everything is stored in the *raw* (pre-activation) parametrisation that INRIA's trainer writes to disk:

    means           [N, 3]    world positions
    quats           [N, 4]    rotation, wxyz, not necessarily normalised
    log_scales      [N, 3]    scale = exp(log_scales)
    opacity_logits  [N]       opacity = sigmoid(opacity_logits)
    sh              [N, K, 3] SH coefficients, K = (deg + 1)^2; sh[:, 0] is the DC term (f_dc)

Colour is `SH_C0 * sh[:, 0] + 0.5` for degree 0 (INRIA convention); higher bands add view dependence.
Stylization touches `sh` only; the other four tensors are the *geometry* and must stay bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814
GEOMETRY_FIELDS = ("means", "quats", "log_scales", "opacity_logits")


class SceneValidationError(ValueError):
    """A `GaussianScene` was built from tensors of the wrong shape, dtype or with non-finite values."""


def sh_degree_from_coeffs(k: int) -> int:
    """Number of SH coefficients per channel -> degree. Raises on counts that are not (d+1)^2, d <= 3."""
    for deg in range(4):
        if (deg + 1) ** 2 == k:
            return deg
    raise SceneValidationError(f"{k} SH coefficients per channel is not (deg+1)^2 for a degree 0..3")


def rgb_to_sh_dc(rgb: Tensor) -> Tensor:
    """Colour in [0, 1] -> DC coefficient (inverse of `SH_C0 * dc + 0.5`)."""
    return (rgb - 0.5) / SH_C0


def sh_dc_to_rgb(dc: Tensor) -> Tensor:
    """DC coefficient -> colour (not clamped)."""
    return dc * SH_C0 + 0.5


@dataclass
class GaussianScene:
    means: Tensor  # [N, 3]
    quats: Tensor  # [N, 4] wxyz
    log_scales: Tensor  # [N, 3]
    opacity_logits: Tensor  # [N]
    sh: Tensor  # [N, K, 3]

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check shapes, dtypes and finiteness. Raises `SceneValidationError` naming the bad field."""
        for f in fields(self):
            t = getattr(self, f.name)
            if not isinstance(t, Tensor):
                raise SceneValidationError(f"{f.name} must be a torch.Tensor, got {type(t).__name__}")
            if not t.is_floating_point():
                raise SceneValidationError(f"{f.name} must be a floating-point tensor, got {t.dtype}")
        n = self.means.shape[0] if self.means.ndim == 2 else -1
        expected = {
            "means": (n, 3),
            "quats": (n, 4),
            "log_scales": (n, 3),
            "opacity_logits": (n,),
        }
        for name, shape in expected.items():
            t = getattr(self, name)
            if tuple(t.shape) != shape:
                raise SceneValidationError(f"{name} has shape {tuple(t.shape)}, expected {shape} (N={n})")
        if self.sh.ndim != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3:
            raise SceneValidationError(f"sh has shape {tuple(self.sh.shape)}, expected ({n}, K, 3)")
        sh_degree_from_coeffs(self.sh.shape[1])
        if n == 0:
            raise SceneValidationError("the scene has no Gaussians")
        for f in fields(self):
            t = getattr(self, f.name)
            finite = torch.isfinite(t.detach())
            if not bool(finite.all()):
                bad = int((~finite).reshape(t.shape[0], -1).any(dim=1).sum())
                raise SceneValidationError(f"{f.name} has non-finite values (NaN or Inf) in {bad} Gaussians")
        q_norm = self.quats.detach().norm(dim=-1)
        if bool((q_norm == 0).any()):
            raise SceneValidationError(f"quats has {int((q_norm == 0).sum())} all-zero quaternions")

    # ------------------------------------------------------------------ properties
    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    def __len__(self) -> int:
        return self.num_gaussians

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_coeffs(self.sh.shape[1])

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def scales(self) -> Tensor:  # [N, 3]
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> Tensor:  # [N]
        return torch.sigmoid(self.opacity_logits)

    @property
    def normalized_quats(self) -> Tensor:  # [N, 4]
        return self.quats / self.quats.norm(dim=-1, keepdim=True)

    @property
    def base_colors(self) -> Tensor:  # [N, 3] the view-independent colour, clamped to [0, 1]
        return sh_dc_to_rgb(self.sh[:, 0]).clamp(0.0, 1.0)

    # ------------------------------------------------------------------ constructors / copies
    @classmethod
    def from_activated(
        cls,
        means: Tensor,  # [N, 3]
        quats: Tensor,  # [N, 4]
        scales: Tensor,  # [N, 3] linear
        opacities: Tensor,  # [N] in (0, 1)
        colors: Tensor,  # [N, 3] in [0, 1], or [N, K, 3] SH
    ) -> GaussianScene:
        eps = 1e-7
        sh = colors if colors.ndim == 3 else rgb_to_sh_dc(colors)[:, None, :]
        op = opacities.clamp(eps, 1 - eps)
        return cls(
            means=means,
            quats=quats,
            log_scales=torch.log(scales.clamp_min(1e-12)),
            opacity_logits=torch.log(op) - torch.log1p(-op),
            sh=sh,
        )

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> GaussianScene:
        return GaussianScene(
            **{f.name: getattr(self, f.name).to(device=device, dtype=dtype) for f in fields(self)}
        )

    def clone(self) -> GaussianScene:
        return GaussianScene(**{f.name: getattr(self, f.name).detach().clone() for f in fields(self)})

    def replace(self, **tensors: Tensor) -> GaussianScene:
        """A new scene sharing every tensor except the ones given (e.g. `scene.replace(sh=new_sh)`)."""
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        unknown = set(tensors) - set(kw)
        if unknown:
            raise TypeError(f"unknown scene fields: {sorted(unknown)}")
        kw.update(tensors)
        return GaussianScene(**kw)

    def with_sh_degree(self, degree: int) -> GaussianScene:
        """Pad (with zeros) or truncate the SH bands to `degree`."""
        if not 0 <= degree <= 3:
            raise ValueError(f"SH degree must be 0..3, got {degree}")
        k = (degree + 1) ** 2
        sh = self.sh
        if sh.shape[1] >= k:
            sh = sh[:, :k]
        else:
            pad = sh.new_zeros(sh.shape[0], k - sh.shape[1], 3)
            sh = torch.cat([sh, pad], dim=1)
        return self.replace(sh=sh.contiguous())

    def subset(self, index: Tensor) -> GaussianScene:
        return GaussianScene(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def geometry_equal(self, other: GaussianScene) -> bool:
        """True when positions, rotations, scales and opacities are bit-identical (same dtype and bits)."""
        for name in GEOMETRY_FIELDS:
            a, b = getattr(self, name).detach().cpu(), getattr(other, name).detach().cpu()
            if a.shape != b.shape or a.dtype != b.dtype:
                return False
            if a.contiguous().numpy().tobytes() != b.contiguous().numpy().tobytes():
                return False
        return True

    def bounds(self, lo: float = 0.0, hi: float = 100.0) -> tuple[Tensor, Tensor]:
        """Per-axis percentiles of the means ([3], [3]); lo/hi in percent. Robust to stray splats."""
        m = self.means.detach().float()
        if m.shape[0] > 200_000:  # quantile has an input size limit; a strided sample is plenty
            m = m[:: m.shape[0] // 200_000 + 1]
        return torch.quantile(m, lo / 100.0, dim=0), torch.quantile(m, hi / 100.0, dim=0)
