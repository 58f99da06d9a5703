"""The guidance registry: one typed entry per guidance module; every list of guidance names comes from here.

    from engine.guidance.registry import GUIDANCE, get, names
    spec = get("dssd")
    spec.config_cls()              # DSSDConfig, nested in StylizeConfig as config.options["dssd"]
    spec.models                    # ("sd15", "styleshot", "clip-vit-h14"): what `available` checks
    spec.role                      # "sds": a term of the paper schedule's SDS stages
    module = spec.build(config, style_image, device)

Adding a guidance (docs/stylization.md, "Adding a guidance"): write `engine/guidance/<name>.py` with an
options dataclass and a `Guidance` subclass (`ModelGuidance` when it loads weights), then add ONE
`GuidanceSpec` to `GUIDANCE` below. The config field, the CLI's `--set <name>.<field>=...`, the
job-settings validation, `splatbrush models list`, the schedule's term lists and the availability check
all follow from that entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from .base import Guidance
from .csd import CSDConfig, CSDGuidance
from .dssd import DSSDConfig, DSSDGuidance
from .magenta import MagentaGuidance, MagentaGuidanceConfig
from .purify import PurifiedStyleGuidance, PurifyConfig
from .quality import QualityConfig, QualityGuidance
from .sos import SOSConfig, SOSGuidance
from .weightfree import WeightFreeConfig, WeightFreeGuidance

ROLES = ("loss", "sds")
"""How the schedule uses a guidance's terms:
    loss  a per-step loss: every step of the weight-free schedule; the fallback of the paper schedule
    sds   a term of the paper schedule's SDS stages (global/local SDS, global-fix/free)"""


@dataclass(frozen=True)
class GuidanceSpec:
    name: str
    """The name used in `StylizeConfig.guidance`, `loss_weights`, `options` and on the command line."""
    config_cls: type
    """Options dataclass of the module; `StylizeConfig.options[name]` is an instance of it."""
    cls: Callable[..., Guidance]
    """The module: `cls(job_config, style_image, device)` (the job config's `options[name]` is used)."""
    role: str
    """One of ROLES."""
    models: tuple[str, ...] = ()
    """Registry model names (engine/models/registry.py) that must be on disk; () = weight-free."""
    provides_targets: bool = False
    """The module has `make_targets(originals, masks) -> [B, 3, H, W]`: the RGB targets of "rgb" stages."""
    description: str = ""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"guidance {self.name!r}: role {self.role!r} is not one of {ROLES}")

    def available(self) -> bool:
        """Whether this guidance can run here: every model it needs is on disk (a cheap file check)."""
        if not self.models:
            return True
        from ..models import available as model_available

        try:
            return all(model_available(m) for m in self.models)
        except (OSError, ValueError):
            return False

    def build(self, config: Any, style_image: np.ndarray, device: torch.device | str) -> Guidance:
        return self.cls(config, style_image, device)

    def default_options(self) -> Any:
        return self.config_cls()

    def option_names(self) -> list[str]:
        return [f.name for f in fields(self.config_cls)]


GUIDANCE: dict[str, GuidanceSpec] = {
    spec.name: spec
    for spec in (
        GuidanceSpec(
            "weightfree",
            WeightFreeConfig,
            WeightFreeGuidance,
            role="loss",
            description="CIELAB sliced-OT palette + random-filter texture statistics + luminance content",
        ),
        GuidanceSpec(
            "magenta",
            MagentaGuidanceConfig,
            MagentaGuidance,
            role="loss",
            models=("magenta",),
            description="Magenta arbitrary stylization: per-view painted targets refreshed in rounds",
        ),
        GuidanceSpec(
            "dssd",
            DSSDConfig,
            DSSDGuidance,
            role="sds",
            models=("sd15", "styleshot", "clip-vit-h14"),
            provides_targets=True,
            description="dynamic style score distillation through StyleShot (SD1.5 + style-aware encoder)",
        ),
        GuidanceSpec(
            "sos",
            SOSConfig,
            SOSGuidance,
            role="sds",
            models=("vgg19",),
            description="simultaneously optimized scales: VGG19 Gram + mean/std style, r42 content",
        ),
        GuidanceSpec(
            "csd",
            CSDConfig,
            CSDGuidance,
            role="sds",
            models=("csd",),
            description="1 - cos of CSD ViT-L style embeddings",
        ),
        GuidanceSpec(
            "quality",
            QualityConfig,
            QualityGuidance,
            role="sds",
            models=("clip-vit-b16",),
            description="3DG-QA: CLIP-IQA antonym prompts, 1 - (0.4 q + 0.4 s + 0.2 c)",
        ),
        GuidanceSpec(
            "purify",
            PurifyConfig,
            PurifiedStyleGuidance,
            role="sds",
            models=("clip-vit-b16",),
            description="1 - cos to the CLIP style embedding with the style image's content words removed",
        ),
    )
}


def names() -> tuple[str, ...]:
    return tuple(GUIDANCE)


def get(name: str) -> GuidanceSpec:
    """The entry of guidance `name`; a ValueError listing the known names otherwise."""
    try:
        return GUIDANCE[name]
    except KeyError:
        raise ValueError(f"unknown guidance {name!r}; known: {', '.join(GUIDANCE)}") from None


def model_guidance() -> tuple[str, ...]:
    """Guidance modules that need downloaded weights."""
    return tuple(n for n, s in GUIDANCE.items() if s.models)


def sds_terms() -> tuple[str, ...]:
    return tuple(n for n, s in GUIDANCE.items() if s.role == "sds")


def used_by(model: str) -> tuple[str, ...]:
    """Guidance modules that need registry model `model` (for `splatbrush models list`)."""
    return tuple(n for n, s in GUIDANCE.items() if model in s.models)
