"""CSD (contrastive style descriptor) loss: 1 - cos(style(render), style(reference)), averaged over views.

Model: a CLIP ViT-L/14 vision tower (OpenAI layout = open_clip's VisionTransformer with QuickGELU, projection
removed, 1024-d) and two heads, `last_layer_style` and `last_layer_content` (each a 1024x768 projection);
outputs L2-normalised. Checkpoint `tomg-group-umd/CSD-ViT-L`: {"model_state_dict": {...}} with DataParallel
`module.` prefixes, stripped here. Preprocessing: bicubic resize 224, centre crop, CLIP mean/std.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import GuidanceBatch
from .model_common import ModelGuidance, clip_preprocess, load_state, style_to_tensor

log = logging.getLogger(__name__)

CSD_VIT_L = {"width": 1024, "layers": 24, "heads": 16, "patch_size": 14, "image_size": 224, "output_dim": 768}


@dataclass
class CSDConfig:
    weight: float = 1.0
    """Multiplier of the `csd` term."""
    use_mask: bool = False
    """Composite the render over grey outside the original's alpha mask before encoding."""
    models_dir: str | None = None
    """Local models folder (default: env SPLATBRUSH_MODELS, then the Hugging Face cache)."""


class CSDModel(nn.Module):
    """CLIP vision backbone (no projection) + style and content heads."""

    def __init__(self, arch: dict):
        super().__init__()
        from open_clip.transformer import QuickGELU, VisionTransformer

        self.backbone = VisionTransformer(
            image_size=arch["image_size"],
            patch_size=arch["patch_size"],
            width=arch["width"],
            layers=arch["layers"],
            heads=arch["heads"],
            mlp_ratio=4.0,
            output_dim=arch["output_dim"],
            act_layer=QuickGELU,
        )
        self.backbone.proj = None
        self.last_layer_style = nn.Parameter(
            torch.randn(arch["width"], arch["output_dim"]) * arch["width"] ** -0.5
        )
        self.last_layer_content = nn.Parameter(
            torch.randn(arch["width"], arch["output_dim"]) * arch["width"] ** -0.5
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """CLIP-preprocessed [B, 3, 224, 224] -> (features [B, width], style [B, D], content [B, D])."""
        feats = self.backbone(x)
        style = F.normalize(feats @ self.last_layer_style, dim=-1)
        content = F.normalize(feats @ self.last_layer_content, dim=-1)
        return feats, style, content


def build_csd(arch: dict | None = None) -> CSDModel:
    return CSDModel(arch or CSD_VIT_L)


def strip_module_prefix(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in sd.items()}


def load_csd(path, arch: dict | None = None) -> CSDModel:
    """CSD from its checkpoint (`model_state_dict`, `module.` prefixes stripped); ViT-L/14 unless `arch`."""
    sd = strip_module_prefix(load_state(path, key="model_state_dict"))
    sd.pop("backbone.proj", None)
    model = build_csd(arch)
    result = model.load_state_dict(sd, strict=False)
    if result.missing_keys:
        raise ValueError(
            f"{path} lacks {len(result.missing_keys)} CSD weights, e.g. {result.missing_keys[:3]}; "
            "is it the CSD-ViT-L checkpoint?"
        )
    if result.unexpected_keys:  # extra heads of other CSD variants: not used by the style loss
        log.info(
            "CSD checkpoint %s: ignoring %d extra keys, e.g. %s",
            path,
            len(result.unexpected_keys),
            result.unexpected_keys[:3],
        )
    return model


def load_csd_from_registry(models_dir: str | None = None) -> CSDModel:
    from ..models import require
    from ..models.loading import read_arch_override

    path = require("csd", models_dir)["csd"].path("pytorch_model.bin")
    return load_csd(path, read_arch_override(path))


class CSDGuidance(ModelGuidance):
    """1 - cos(CSD style embedding of the render, of the style reference); returns {"csd": loss}.
    `models`: a CSDModel (default: loaded from the registry)."""

    name = "csd"
    options_cls = CSDConfig

    def setup(self, style_image: np.ndarray, models: CSDModel | None) -> None:
        self.model = (models or load_csd_from_registry(self.cfg.models_dir)).to(self.device).eval()
        self.model.requires_grad_(False)
        size = self.model.backbone.image_size[0]
        self.size = size
        with torch.no_grad():
            self.style_embedding = self.model(
                clip_preprocess(style_to_tensor(style_image, self.device), size)
            )[1]

    def __call__(self, batch: GuidanceBatch) -> dict[str, Tensor]:
        x = batch.images
        if self.cfg.use_mask:
            x = x * batch.masks + 0.5 * (1 - batch.masks)
        style = self.model(clip_preprocess(x, self.size))[1]  # [B, D]
        loss = (1.0 - (style * self.style_embedding).sum(-1)).mean()
        return {"csd": self.cfg.weight * loss}
