"""What every render backend returns."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class RenderOutput:
    image: Tensor  # [H, W, 3] composited over the background; in [0, 1] for backgrounds in [0, 1]
    alpha: Tensor  # [H, W] accumulated opacity
    depth: Tensor  # [H, W] expected depth: sum(w_i z_i) / alpha (0 where alpha == 0)
