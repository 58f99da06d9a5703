"""Gaussian scenes in memory (`GaussianScene`) and on disk (INRIA .ply, compressed .ply, .splat)."""

from .errors import SceneFormatError
from .gaussians import SH_C0, GaussianScene, SceneValidationError, rgb_to_sh_dc, sh_dc_to_rgb
from .io import load_scene, load_scene_with_extra, save_scene, scene_from_arrays, scene_to_arrays

__all__ = [
    "SH_C0",
    "GaussianScene",
    "SceneFormatError",
    "SceneValidationError",
    "load_scene",
    "load_scene_with_extra",
    "rgb_to_sh_dc",
    "save_scene",
    "scene_from_arrays",
    "scene_to_arrays",
    "sh_dc_to_rgb",
]
