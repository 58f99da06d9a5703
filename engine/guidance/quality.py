"""3DG-QA: CLIP-IQA as a differentiable prior on the renders (open_clip CLIP ViT-B/16, OpenAI weights).

For each prompt pair (positive, negative): score = softmax([100 cos(x, t+), 100 cos(x, t-)])[0]; pairs
quality ("Good photo.", "Bad photo."), sharpness ("Sharp photo.", "Blurry photo."), colourfulness
("Colorful photo.", "Dull photo."). Loss = 1 - (0.4 quality + 0.4 sharpness + 0.2 colourfulness), view mean.
Library CLIP-IQA runs under inference mode; this re-implementation keeps the graph (resize 224, CLIP
normalisation, image features, L2 normalisation). Text features are computed once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import GuidanceBatch
from .model_common import ModelGuidance, clip_preprocess, load_state

PROMPT_PAIRS = (
    ("Good photo.", "Bad photo."),
    ("Sharp photo.", "Blurry photo."),
    ("Colorful photo.", "Dull photo."),
)
PAIR_WEIGHTS = (0.4, 0.4, 0.2)


@dataclass
class QualityConfig:
    weight: float = 1.0
    """Multiplier of the `quality` term."""
    logit_scale: float = 100.0
    """Temperature of the pair softmax (CLIP-IQA: 100)."""
    models_dir: str | None = None
    """Local models folder (default: env SPLATBRUSH_MODELS, then the Hugging Face cache)."""


def build_open_clip(arch: dict | None = None) -> nn.Module:
    """An open_clip CLIP: `arch` is an open_clip model config (dict with embed_dim, vision_cfg, text_cfg,
    quick_gelu); None = ViT-B-16 with QuickGELU (the OpenAI weights)."""
    import open_clip
    from open_clip.model import CLIP

    if arch is None:
        arch = dict(open_clip.get_model_config("ViT-B-16"))
        arch["quick_gelu"] = True
    return CLIP(**arch)


def load_open_clip_from_registry(name: str = "clip-vit-b16", models_dir: str | None = None) -> nn.Module:
    from ..models import require
    from ..models.loading import read_arch_override

    found = require(name, models_dir)[name]
    path = found.path("open_clip_model.safetensors|open_clip_pytorch_model.bin")
    model = build_open_clip(read_arch_override(path))
    sd = load_state(path)
    sd = {k: v for k, v in sd.items() if k != "logit_bias" or hasattr(model, "logit_bias")}
    model.load_state_dict(sd, strict=True)
    return model


def encode_text(model: nn.Module, prompts: list[str], device: torch.device) -> Tensor:
    """[P, D] L2-normalised text features (open_clip's bundled BPE tokenizer; works offline)."""
    import open_clip

    tokens = open_clip.tokenize(prompts, context_length=model.context_length).to(device)
    with torch.no_grad():
        return F.normalize(model.encode_text(tokens).float(), dim=-1)


def image_size(model: nn.Module) -> int:
    size = model.visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


class QualityGuidance(ModelGuidance):
    """Differentiable CLIP-IQA; returns {"quality": 1 - weighted pair scores}. No style image needed.
    `models`: an open_clip model (default: loaded from the registry)."""

    name = "quality"
    options_cls = QualityConfig
    needs_style = False

    def setup(self, style_image: np.ndarray | None, models: nn.Module | None) -> None:
        self.model = (models or load_open_clip_from_registry("clip-vit-b16", self.cfg.models_dir)).to(
            self.device
        )
        self.model.eval().requires_grad_(False)
        self.size = image_size(self.model)
        prompts = [p for pair in PROMPT_PAIRS for p in pair]
        self.text = encode_text(self.model, prompts, self.device).view(len(PROMPT_PAIRS), 2, -1)  # [3, 2, D]

    def scores(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] in [0, 1] -> [B, 3] positive-prompt probabilities (quality, sharpness,
        colourfulness)."""
        feats = F.normalize(self.model.encode_image(clip_preprocess(images, self.size)).float(), dim=-1)
        logits = self.cfg.logit_scale * torch.einsum("bd,pkd->bpk", feats, self.text)  # [B, 3, 2]
        return logits.softmax(-1)[..., 0]

    def __call__(self, batch: GuidanceBatch) -> dict[str, Tensor]:
        s = self.scores(batch.images)
        w = s.new_tensor(PAIR_WEIGHTS)
        return {"quality": self.cfg.weight * (1.0 - (s * w).sum(-1)).mean()}
