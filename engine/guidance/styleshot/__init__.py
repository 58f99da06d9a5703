"""StyleShot (open-mmlab/StyleShot, re-implemented): style-aware encoder, style cross-attention, weight
loading."""

from .attention import StyleAttnProcessor, install_style_attention, set_style_scale
from .encoder import ImageProjection, StyleAwareEncoder, style_image_tensor, style_patches
from .weights import StyleShotAdapter, build_style_encoder, load_styleshot, map_ip_state_dict

__all__ = [
    "ImageProjection",
    "StyleAttnProcessor",
    "StyleAwareEncoder",
    "StyleShotAdapter",
    "build_style_encoder",
    "install_style_attention",
    "load_styleshot",
    "map_ip_state_dict",
    "set_style_scale",
    "style_image_tensor",
    "style_patches",
]
