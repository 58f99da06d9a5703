"""Loading StyleShot's published weights into our modules, and the key mapping between the two.

`ip.bin` (Gaojunyao/StyleShot, pretrained_weight/) is one flat state dict:
    style_image_proj_modules.{j}.proj.weight|bias, .norm.weight|bias   j = 0, 1, 2  -> our image_proj.{j}
    adapter_modules.{i}.to_k_ip.weight, .to_v_ip.weight                i = index of the processor in
        `unet.attn_processors` (self- AND cross-attention processors count; only cross ones have weights)
                                                                        -> our processor named names[i]
    controlnet.*   the content-fusion encoder (optional here; returned separately)
    unet.*         ignored (StyleShot saves nothing we need there)
`style_aware_encoder.bin` uses the names of our `StyleAwareEncoder` (incl. `image_encoder.vision_model.*`, the
fine-tuned CLIP-H tower); a persistent `position_ids` buffer, if present, is dropped.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor, nn

from ..model_common import load_state
from .attention import StyleAttnProcessor, install_style_attention
from .encoder import ImageProjection, StyleAwareEncoder

_ADAPTER = re.compile(r"^adapter_modules\.(\d+)\.(to_[kv]_ip\.weight)$")
_PROJ = re.compile(r"^style_image_proj_modules\.(\d+)\.(.+)$")


def map_ip_state_dict(
    sd: dict[str, Tensor], processor_names: list[str]
) -> tuple[dict[str, Tensor], dict[str, dict[str, Tensor]], dict[str, Tensor]]:
    """StyleShot `ip.bin` -> (image_proj state dict, {processor name: its state dict}, controlnet state
    dict)."""
    proj: dict[str, Tensor] = {}
    procs: dict[str, dict[str, Tensor]] = {}
    controlnet: dict[str, Tensor] = {}
    for key, value in sd.items():
        if key.startswith("unet."):
            continue
        if key.startswith("controlnet."):
            controlnet[key[len("controlnet.") :]] = value
        elif m := _PROJ.match(key):
            proj[f"{m.group(1)}.{m.group(2)}"] = value
        elif m := _ADAPTER.match(key):
            i = int(m.group(1))
            if i >= len(processor_names):
                raise ValueError(
                    f"ip.bin key {key!r}: processor index {i} but the UNet has only "
                    f"{len(processor_names)} attention processors; is this an SD1.5 StyleShot file?"
                )
            name = processor_names[i]
            if name.endswith("attn1.processor"):
                raise ValueError(
                    f"ip.bin key {key!r} points at self-attention processor {name!r}; "
                    "the UNet's processor order does not match StyleShot's"
                )
            procs.setdefault(name, {})[m.group(2)] = value
        else:
            raise ValueError(
                f"unexpected key {key!r} in StyleShot ip.bin (expected style_image_proj_modules.*, "
                "adapter_modules.*, controlnet.* or unet.*)"
            )
    return proj, procs, controlnet


def _load_torch(path: Path) -> dict[str, Tensor]:
    return load_state(path)


class StyleShotAdapter(nn.Module):
    """The style side of StyleShot: encoder + 3 image projections (2 tokens each) + the UNet's style
    processors."""

    def __init__(
        self, encoder: StyleAwareEncoder, cross_attention_dim: int, processors: dict[str, StyleAttnProcessor]
    ):
        super().__init__()
        self.encoder = encoder
        self.image_proj = nn.ModuleList(
            [ImageProjection(cross_attention_dim, encoder.projection_dim, 2) for _ in range(3)]
        )
        self.processors = processors  # plain dict: these modules belong to the UNet

    def tokens_from_embeddings(self, embeds: Tensor) -> Tensor:
        """[B, 3, proj_dim] -> [B, 6, cross_attention_dim] style tokens."""
        return torch.cat([p(embeds[:, i]) for i, p in enumerate(self.image_proj)], dim=1)

    def style_tokens(self, patches: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """(style tokens, unconditional tokens = projection of zero embeddings), each [B, 6, C]."""
        embeds = self.encoder(patches)
        return self.tokens_from_embeddings(embeds), self.tokens_from_embeddings(torch.zeros_like(embeds))


def build_style_encoder(clip_config_dir: Path, projection_dim: int | None = None) -> StyleAwareEncoder:
    """A randomly initialised StyleAwareEncoder whose transformer follows the CLIP config in `clip_config_dir`
    (the laion CLIP-ViT-H-14 config.json for the real model; tiny configs shrink the patch CNNs to match)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    vcfg = CLIPVisionConfig.from_pretrained(str(clip_config_dir))
    if projection_dim is not None:  # a full CLIP config.json may keep projection_dim only at its top level
        vcfg.projection_dim = int(projection_dim)
    if 1280 % vcfg.hidden_size:
        raise ValueError(
            f"CLIP hidden size {vcfg.hidden_size} must divide 1280 (StyleShot's patch CNN width)"
        )
    return StyleAwareEncoder(CLIPVisionModelWithProjection(vcfg), width_div=1280 // vcfg.hidden_size)


def load_styleshot(unet, ip_path: Path, encoder_path: Path, clip_config_dir: Path) -> StyleShotAdapter:
    """Install the style processors on `unet` and load StyleShot's two weight files into them and the
    encoder."""
    enc_sd = {k: v for k, v in _load_torch(encoder_path).items() if not k.endswith("position_ids")}
    proj_w = enc_sd.get("image_encoder.visual_projection.weight")  # [projection_dim, hidden]
    encoder = build_style_encoder(clip_config_dir, None if proj_w is None else proj_w.shape[0])
    encoder.load_state_dict(enc_sd, strict=True)
    processors = install_style_attention(unet, num_tokens=6)
    adapter = StyleShotAdapter(encoder, unet.config.cross_attention_dim, processors)
    proj, procs, _ = map_ip_state_dict(_load_torch(ip_path), list(unet.attn_processors))
    adapter.image_proj.load_state_dict(proj, strict=True)
    missing = sorted(set(processors) - set(procs))
    if missing:
        raise ValueError(
            f"{ip_path} has no style K/V weights for {len(missing)} cross-attention layers, "
            f"e.g. {missing[0]!r}"
        )
    for name, sd in procs.items():
        processors[name].load_state_dict(sd, strict=True)
    return adapter
