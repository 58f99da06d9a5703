"""What a stylization job is built from: its views, device, preset and guidance modules.

default_cameras(scene, views, size)   orbit views in adjacency order
resolve_device("auto")                CUDA when present, else CPU
default_preset(device)                "paper" on a GPU with every model downloaded, else "painterly"
build_guidance(name, config, style, device)   from the guidance registry
resolve_guidance(config)              which of the asked-for guidance can run here
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from ..cameras.camera import Camera
from ..guidance import registry
from ..guidance.base import Guidance
from ..scene.gaussians import GaussianScene
from .config import PAPER_GUIDANCE, StylizeConfig

log = logging.getLogger("splatbrush.stylize")


# ---------------------------------------------------------------------------------------------- views
def default_cameras(scene: GaussianScene, views: int, size: int, up=None) -> list[Camera]:
    """`views` orbit cameras (square, `size` px) around the scene, in adjacency order. Two rings (above and
    slightly below the object) when there are 8 or more views, so the stylization also reaches the bottom.
    `up`: the scene's up axis ("+z" for Blender-made objects, "-y" for COLMAP captures; None = -y)."""
    from ..cameras.orbit import orbit_cameras

    elevations = (25.0, -15.0) if views >= 8 else (20.0,)
    return orbit_cameras(scene, views, size, size, elevation_deg=elevations, up=up)


def order_views(cameras: Sequence[Camera]) -> list[int]:
    """Indices of `cameras` in adjacency order (consecutive views are neighbours)."""
    from ..cameras.orbit import adjacency_order

    return list(adjacency_order(list(cameras)))


def resolve_device(device: str = "auto") -> str:
    """ "auto" -> "cuda" when a CUDA GPU is there, else "cpu"; anything else unchanged."""
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_preset(device: str = "auto") -> str:
    """The preset a job gets when none is named: the full method ("paper") on a GPU whose model-based
    guidance is all downloaded, else the CPU default (shared_protocol.DEFAULT_PRESET, "painterly", which
    runs "fast" where its style network is not installed)."""
    from shared_protocol import DEFAULT_PRESET

    on_gpu = resolve_device(device).startswith("cuda")
    if on_gpu and all(registry.get(n).available() for n in PAPER_GUIDANCE):
        return "paper"
    return DEFAULT_PRESET


# ---------------------------------------------------------------------------------------------- guidance
def build_guidance(
    name: str, config: StylizeConfig, style_image: np.ndarray, device: torch.device
) -> Guidance:
    """Instantiate guidance `name` from its registry entry."""
    return registry.get(name).build(config, style_image, device)


def resolve_guidance(config: StylizeConfig) -> tuple[list[str], str | None]:
    """(names to build, one-line note or None): the asked-for guidance whose models are on disk; when none
    of the asked-for model-based ones is, the weight-free guidance instead."""
    wanted = list(config.guidance)
    needs_models = [g for g in wanted if registry.get(g).models]
    usable = [g for g in needs_models if registry.get(g).available()]
    names = [g for g in wanted if not registry.get(g).models or g in usable]
    missing = [g for g in needs_models if g not in usable]
    note = None
    if missing and not usable:
        note = (
            f"models for {', '.join(missing)} are not available: using the weight-free guidance "
            f"(colour transport + random-filter texture statistics)"
        )
        if "weightfree" not in names:
            names.append("weightfree")
    elif missing:
        note = f"models for {', '.join(missing)} are not available: their loss terms are skipped"
    return names, note
