"""Splatbrush engine: Gaussian scenes, cameras, differentiable rendering and StyleMe3D stylization.

The scripting API:

    from engine import load_scene, save_scene, load_cameras, orbit_cameras, render
    scene = load_scene("scene.ply")
    cams = orbit_cameras(scene, 8, 512, 512)
    out = render(scene, cams[0])            # out.image [H,W,3], out.alpha [H,W], out.depth [H,W]
"""

from .cameras import Camera, CameraError
from .render import RenderOutput, render
from .scene import GaussianScene, SceneFormatError, SceneValidationError

__all__ = [
    "Camera",
    "CameraError",
    "GaussianScene",
    "RenderOutput",
    "SceneFormatError",
    "SceneValidationError",
    "render",
]
