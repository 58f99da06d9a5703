"""Stylization: the optimization loop, its settings and presets, the outpainting schedule, outputs.

from engine.stylize import StylizeConfig, stylize, StylizeResult, ProgressEvent, PRESETS
config = StylizeConfig.from_preset("fast", steps=None, size=None, views=None, seed=0, device="cpu")
result = stylize(scene, style_image, cameras=None, config=config, callback=None, should_stop=None,
                 checkpoint_dir=None)
result.scene, result.interrupted, result.report
"""

from ..guidance.weightfree import WeightFreeConfig
from .config import PRESETS, StylizeConfig
from .loop import ProgressEvent, StylizeResult, stylize
from .parts import default_cameras, default_preset, resolve_device

__all__ = [
    "PRESETS",
    "ProgressEvent",
    "StylizeConfig",
    "StylizeResult",
    "WeightFreeConfig",
    "default_cameras",
    "default_preset",
    "resolve_device",
    "stylize",
]
