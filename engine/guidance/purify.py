"""Style purification (StyleMe3D; InstantStyle does the same): remove the reference's content from its CLIP
embedding.

    purified = normalize( CLIP-image(style) - content_scale * CLIP-text(content words)
                          + style_scale * CLIP-text(style words) )

The paper captions the reference with a large VLM; we take the content (and optional style) words from the
user. `PurifiedStyleGuidance` turns the purified embedding into a loss, 1 - cos(CLIP-image(render), purified),
for jobs that want a CLIP-space style term ("purify" in GUIDANCE_MODELS: needs clip-vit-b16).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import GuidanceBatch
from .model_common import ModelGuidance, clip_preprocess, style_to_tensor
from .quality import encode_text, image_size, load_open_clip_from_registry


@dataclass
class PurifyConfig:
    content_words: str = ""
    """What the style image depicts (e.g. "a woman, a river"): subtracted. Empty = no purification."""
    style_words: str = ""
    """Optional words for the style (e.g. "impressionist oil painting"): added."""
    content_scale: float = 0.8
    """Scale of the subtracted content text embedding (InstantStyle's example uses 0.8)."""
    style_scale: float = 0.0
    """Scale of the added style text embedding."""
    weight: float = 1.0
    """Multiplier of the `purify` term."""
    models_dir: str | None = None
    """Local models folder (default: env SPLATBRUSH_MODELS, then the Hugging Face cache)."""


def purified_style_embedding(
    model: nn.Module,
    style: Tensor,
    content_words: str,
    style_words: str = "",
    content_scale: float = 0.8,
    style_scale: float = 0.0,
) -> Tensor:
    """[1, 3, H, W] style image in [0, 1] -> [1, D] L2-normalised purified style embedding (no grad)."""
    device = style.device
    with torch.no_grad():
        e = F.normalize(model.encode_image(clip_preprocess(style, image_size(model))).float(), dim=-1)
        if content_words.strip():
            e = e - content_scale * encode_text(model, [content_words], device)
        if style_words.strip() and style_scale:
            e = e + style_scale * encode_text(model, [style_words], device)
    return F.normalize(e, dim=-1)


class PurifiedStyleGuidance(ModelGuidance):
    """1 - cos(CLIP-image(render), purified style embedding); returns {"purify": loss}.
    `models`: an open_clip model (default: loaded from the registry)."""

    name = "purify"
    options_cls = PurifyConfig

    def setup(self, style_image: np.ndarray, models: nn.Module | None) -> None:
        self.model = (models or load_open_clip_from_registry("clip-vit-b16", self.cfg.models_dir)).to(
            self.device
        )
        self.model.eval().requires_grad_(False)
        c = self.cfg
        self.target = purified_style_embedding(
            self.model,
            style_to_tensor(style_image, self.device),
            c.content_words,
            c.style_words,
            c.content_scale,
            c.style_scale,
        )

    def __call__(self, batch: GuidanceBatch) -> dict[str, Tensor]:
        x = clip_preprocess(batch.images, image_size(self.model))
        e = F.normalize(self.model.encode_image(x).float(), dim=-1)
        return {"purify": self.cfg.weight * (1.0 - (e * self.target).sum(-1)).mean()}
