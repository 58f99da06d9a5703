"""Gaussian scenes in memory (`GaussianScene`) and on disk (INRIA .ply, compressed .ply, .splat)."""

from .errors import SceneFormatError
from .gaussians import SH_C0, GaussianScene, SceneValidationError, rgb_to_sh_dc, sh_dc_to_rgb

__all__ = [
    "SH_C0",
    "GaussianScene",
    "SceneFormatError",
    "SceneValidationError",
    "rgb_to_sh_dc",
    "sh_dc_to_rgb",
]
