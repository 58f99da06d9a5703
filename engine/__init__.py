"""Splatbrush engine: Gaussian scenes, cameras, differentiable rendering and StyleMe3D stylization.

The scripting API:

    from engine import load_scene, save_scene, load_cameras, orbit_cameras, render
    scene = load_scene("scene.ply")
    cams = orbit_cameras(scene, 8, 512, 512)
    out = render(scene, cams[0])            # out.image [H,W,3] in [0,1], out.alpha [H,W], out.depth [H,W]
    result = stylize(scene, style_uint8_hw3, cameras=cams, config=StylizeConfig.from_preset("fast"))

Nothing heavy happens at import time: model-based code is imported only when used.
"""

from .cameras import Camera, CameraError
from .cameras.io import load_cameras, save_cameras
from .cameras.orbit import orbit_cameras
from .render import RenderOutput, render
from .scene import GaussianScene, SceneFormatError, SceneValidationError
from .scene.io import load_scene, save_scene
from .stylize import StylizeConfig, StylizeResult, stylize

__all__ = [
    "Camera",
    "CameraError",
    "GaussianScene",
    "RenderOutput",
    "SceneFormatError",
    "SceneValidationError",
    "StylizeConfig",
    "StylizeResult",
    "load_cameras",
    "load_scene",
    "orbit_cameras",
    "render",
    "save_cameras",
    "save_scene",
    "stylize",
]
