"""What a stylization job is built from: its views, device, preset and guidance modules.

default_cameras(scene, views, size)   orbit views in adjacency order
resolve_device("auto")                CUDA when present, else CPU
default_preset(device)                "paper" on a GPU with every model downloaded, else "fast"
model_available(name)                 whether a model-based guidance can run here (weights present)
build_guidance(name, config, style, device)
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence

import numpy as np
import torch

from ..cameras.camera import Camera
from ..guidance.base import Guidance
from ..scene.gaussians import GaussianScene
from .config import MODEL_GUIDANCE, StylizeConfig

log = logging.getLogger("splatbrush.stylize")


# ---------------------------------------------------------------------------------------------- views
def default_cameras(scene: GaussianScene, views: int, size: int) -> list[Camera]:
    """`views` orbit cameras (square, `size` px) around the scene, in adjacency order. Two rings (above and
    slightly below the object) when there are 8 or more views, so the stylization also reaches the bottom."""
    from ..cameras.orbit import orbit_cameras

    elevations = (25.0, -15.0) if views >= 8 else (20.0,)
    return orbit_cameras(scene, views, size, size, elevation_deg=elevations)


def order_views(cameras: Sequence[Camera]) -> list[int]:
    try:
        from ..cameras.orbit import adjacency_order

        return list(adjacency_order(list(cameras)))
    except ImportError:  # pragma: no cover - the orbit module is part of the engine
        from .schedule import adjacency_order as simple_order

        return simple_order(np.stack([c.position for c in cameras]))


def resolve_device(device: str = "auto") -> str:
    """ "auto" -> "cuda" when a CUDA GPU is there, else "cpu"; anything else unchanged."""
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_preset(device: str = "auto") -> str:
    """The preset a job gets when none is named: the full method ("paper") on a GPU whose model-based
    guidance is all downloaded, else the weight-free CPU default ("fast")."""
    on_gpu = resolve_device(device).startswith("cuda")
    if on_gpu and all(model_available(n) for n in MODEL_GUIDANCE):
        return "paper"
    return "fast"


# ---------------------------------------------------------------------------------------------- guidance
def model_available(name: str) -> bool:
    """Whether the model-based guidance `name` can run here (its module and weights exist)."""
    try:
        models = importlib.import_module("engine.models")
    except ImportError:
        return False
    check = getattr(models, "available", None)
    if check is None:
        return False
    try:
        return bool(check(name))
    except Exception as e:  # a broken registry must not stop the weight-free path
        log.debug("engine.models.available(%r) failed: %s", name, e)
        return False


def build_guidance(
    name: str, config: StylizeConfig, style_image: np.ndarray, device: torch.device
) -> Guidance:
    """Instantiate guidance `name`: module engine.guidance.<name> must define a Guidance subclass whose
    `name` attribute is `name` (or a function `build(config, style_image, device)`)."""
    if name == "weightfree":
        from ..guidance.weightfree import WeightFreeGuidance

        return WeightFreeGuidance(config, style_image, device)
    module = importlib.import_module(f"engine.guidance.{name}")
    if hasattr(module, "build"):
        return module.build(config, style_image, device)
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, Guidance) and obj is not Guidance and obj.name == name:
            return obj(config, style_image, device)
    raise RuntimeError(
        f"engine.guidance.{name} defines no Guidance subclass with name {name!r} and no build()"
    )


def _resolve_guidance(config: StylizeConfig) -> tuple[list[str], str | None]:
    """(names to build, one-line note or None)."""
    wanted = list(config.guidance)
    models = [g for g in wanted if g in MODEL_GUIDANCE]
    usable = [g for g in models if model_available(g)]
    names = [g for g in wanted if g == "weightfree" or g in usable]
    missing = [g for g in models if g not in usable]
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
