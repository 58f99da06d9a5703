"""StyleShot's style injection: decoupled cross-attention on the UNet's cross-attention layers.

    out = Attn(Q, K_t, V_t) + scale * Attn(Q, K_s, V_s)

with the encoder states laid out as [text tokens; `num_tokens` style tokens] and bias-free K/V projections
(`to_k_ip`, `to_v_ip`) for the style tokens. This is the form of diffusers' `IPAdapterAttnProcessor2_0` (0.42)
without masks, multi-adapter lists, or its deprecation path for concatenated states: StyleShot feeds
concatenated [text; style] states, so we mirror that processor for the single-adapter case here.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def _heads(x: Tensor, heads: int) -> Tensor:  # [B, L, C] -> [B, heads, L, C / heads]
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)


def _merge(x: Tensor) -> Tensor:  # [B, heads, L, d] -> [B, L, heads * d]
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class StyleAttnProcessor(nn.Module):
    """Cross-attention processor with an extra style branch (an `nn.Module`: its weights are UNet params)."""

    def __init__(self, hidden_size: int, cross_attention_dim: int, num_tokens: int = 6, scale: float = 1.0):
        super().__init__()
        self.num_tokens = num_tokens
        self.scale = scale
        self.to_k_ip = nn.Linear(cross_attention_dim, hidden_size, bias=False)
        self.to_v_ip = nn.Linear(cross_attention_dim, hidden_size, bias=False)

    def __call__(
        self,
        attn,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor | None = None,
        attention_mask: Tensor | None = None,
        temb: Tensor | None = None,
        **kwargs,
    ) -> Tensor:
        if encoder_hidden_states is None:
            raise ValueError("StyleAttnProcessor is for cross-attention: encoder_hidden_states is required")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        four_d = hidden_states.ndim == 4
        if four_d:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        split = encoder_hidden_states.shape[1] - self.num_tokens
        text, style = encoder_hidden_states[:, :split], encoder_hidden_states[:, split:]
        if attn.norm_cross:
            text = attn.norm_encoder_hidden_states(text)
        q = _heads(attn.to_q(hidden_states), attn.heads)
        mask = None
        if attention_mask is not None:
            mask = attn.prepare_attention_mask(attention_mask, text.shape[1], text.shape[0])
            mask = mask.view(text.shape[0], attn.heads, -1, mask.shape[-1])
        out = F.scaled_dot_product_attention(
            q, _heads(attn.to_k(text), attn.heads), _heads(attn.to_v(text), attn.heads), attn_mask=mask
        )
        out = _merge(out)
        if self.scale != 0:
            style_out = F.scaled_dot_product_attention(
                q, _heads(self.to_k_ip(style), attn.heads), _heads(self.to_v_ip(style), attn.heads)
            )
            out = out + self.scale * _merge(style_out)
        out = attn.to_out[1](attn.to_out[0](out.to(q.dtype)))
        if four_d:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def cross_attention_hidden_size(unet, processor_name: str) -> int:
    """Channel width of the attention block `processor_name` (e.g.
    'up_blocks.1.attentions.0...attn2.processor')."""
    channels = list(unet.config.block_out_channels)
    if processor_name.startswith("mid_block"):
        return channels[-1]
    block = int(processor_name.split(".")[1])
    if processor_name.startswith("up_blocks"):
        return list(reversed(channels))[block]
    if processor_name.startswith("down_blocks"):
        return channels[block]
    raise ValueError(f"unexpected attention processor name {processor_name!r}")


def install_style_attention(unet, num_tokens: int = 6, scale: float = 1.0) -> dict[str, StyleAttnProcessor]:
    """Replace every cross-attention (attn2) processor of a diffusers UNet by a StyleAttnProcessor
    (self-attention
    keeps diffusers' default). Returns the new processors by processor name, in the UNet's order."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    procs: dict = {}
    styled: dict[str, StyleAttnProcessor] = {}
    param = next(unet.parameters())
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            procs[name] = AttnProcessor2_0()
        else:
            p = StyleAttnProcessor(
                cross_attention_hidden_size(unet, name), unet.config.cross_attention_dim, num_tokens, scale
            ).to(param.device, param.dtype)
            procs[name] = styled[name] = p
    unet.set_attn_processor(procs)
    return styled


def set_style_scale(processors: dict[str, StyleAttnProcessor], scale: float) -> None:
    """λ of `Attn(text) + λ·Attn(style)` on every processor."""
    for p in processors.values():
        p.scale = float(scale)
