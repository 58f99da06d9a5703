"""Model registry, lookup and download for the model-based guidance (StyleMe3D's DSSD, SOS, CSD, 3DG-QA).

    from engine.models import available, require, ModelMissingError
    available("dssd")        # cheap file check: are sd15 + styleshot + clip-vit-h14 on disk?
    require("csd")           # {model name: ResolvedModel} or ModelMissingError (names the download command)

`available` accepts guidance names ("dssd", "sos", "csd", "quality", "purify") and model names (see
`REGISTRY`). Nothing heavy is imported here; the guidance modules load the weights (engine/guidance).
"""

from .loading import (
    ENV_MODELS_DIR,
    ModelMissingError,
    ResolvedModel,
    available,
    models_dir,
    models_for,
    require,
    resolve,
)
from .registry import REGISTRY, ModelSpec, spec

__all__ = [
    "ENV_MODELS_DIR",
    "REGISTRY",
    "ModelMissingError",
    "ModelSpec",
    "ResolvedModel",
    "available",
    "models_dir",
    "models_for",
    "require",
    "resolve",
    "spec",
]
