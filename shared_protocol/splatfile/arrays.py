"""`SplatArrays`: a Gaussian scene as plain numpy arrays (no torch, no bpy), the form that files, the wire
protocol and Blender all exchange. Same raw parametrisation as `engine.scene.GaussianScene`:

    means           [N, 3]    float32
    quats           [N, 4]    float32, wxyz, not necessarily normalised
    log_scales      [N, 3]    float32
    opacity_logits  [N]       float32
    sh              [N, K, 3] float32, K = (deg + 1)^2; sh[:, 0] is f_dc, sh[:, 1:] is f_rest (per channel)
    extra           name -> [N] float32: other per-vertex properties a file carried (e.g. nx, ny, nz), kept
                    so that read -> write reproduces the file's properties
    meta            whole-scene facts a file carried, kept across conversions: "antialiased" (bool; .spz flag
                    0x1, SOG `antialias`: the scene was trained with Mip-Splatting's 2D filter)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

GAUSSIAN_FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")


@dataclass
class SplatArrays:
    means: np.ndarray  # [N, 3]
    quats: np.ndarray  # [N, 4]
    log_scales: np.ndarray  # [N, 3]
    opacity_logits: np.ndarray  # [N]
    sh: np.ndarray  # [N, K, 3]
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return {1: 0, 4: 1, 9: 2, 16: 3}[int(self.sh.shape[1])]

    def check(self) -> None:
        """Raise ValueError naming the first field whose shape or values are wrong."""
        n = self.means.shape[0] if self.means.ndim == 2 else -1
        shapes = {"means": (n, 3), "quats": (n, 4), "log_scales": (n, 3), "opacity_logits": (n,)}
        for name, shape in shapes.items():
            a = getattr(self, name)
            if tuple(a.shape) != shape:
                raise ValueError(f"{name} has shape {tuple(a.shape)}, expected {shape}")
        if (
            self.sh.ndim != 3
            or self.sh.shape[0] != n
            or self.sh.shape[2] != 3
            or self.sh.shape[1] not in (1, 4, 9, 16)
        ):
            raise ValueError(f"sh has shape {tuple(self.sh.shape)}, expected ({n}, 1|4|9|16, 3)")
        if n <= 0:
            raise ValueError("no Gaussians")
        for name in GAUSSIAN_FIELDS:
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"{name} has non-finite values (NaN or Inf)")
        for name, a in self.extra.items():
            if a.shape != (n,):
                raise ValueError(f"extra property {name!r} has shape {a.shape}, expected ({n},)")
