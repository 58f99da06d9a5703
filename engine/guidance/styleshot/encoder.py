"""StyleShot's style-aware encoder: multi-scale patch CNNs + a CLIP vision transformer -> 3 style embeddings.

Architecture (learned from open-mmlab/StyleShot's paper and public code, written here from scratch):
  style image 512x512 in [-1, 1] -> recursive quadrant crops: 8 patches of 128 px, 16 of 64 px, 32 of 32 px
  per scale s (high, middle, low): PixelUnshuffle(8) -> conv3x3 to 320 ch -> ResBlocks (1x1 kernels, avg-pool
  downsamples: 3 / 2 / 1 of them) -> 2x2 avg pool -> Linear(1280, 1280): one token per patch
  tokens = [cls_h, 8 high, cls_m, 16 middle, cls_l, 32 low] (59) + learned position embedding
  -> CLIP vision pre-LN -> CLIP encoder -> tokens 0, 9, 26 -> post-LN -> visual projection  # [B, 3, proj_dim]
Parameter names follow StyleShot's checkpoint (`cnn.0.body.2.down_opt`, `style_embeddings.0`, ...), so its
`style_aware_encoder.bin` loads with strict=True.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_POSITIONS = 59  # 3 class tokens + 8 + 16 + 32 patch tokens
CLASS_TOKEN_POSITIONS = (0, 9, 26)
PATCH_SIZES = (128, 64, 32)  # high, middle, low
# (in, out, downsample) per ResBlock, per scale: 3 / 2 / 1 downsamples
_HIGH = (
    (320, 320, False),
    (320, 640, False),
    (640, 640, True),
    (640, 640, True),
    (640, 1280, True),
    (1280, 1280, False),
)
_MIDDLE = ((320, 320, False), (320, 640, False), (640, 640, True), (640, 1280, True), (1280, 1280, False))
_LOW = ((320, 320, False), (320, 640, False), (640, 1280, True), (1280, 1280, False))


class Downsample(nn.Module):
    """2x2 average pool (StyleShot builds its blocks with use_conv=False)."""

    def __init__(self) -> None:
        super().__init__()
        self.op = nn.AvgPool2d(2, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """[down] -> [1x1 in_conv when channels change] -> conv3x3 -> ReLU -> conv1x1, plus identity skip."""

    def __init__(self, cin: int, cout: int, down: bool, scale: int = 1):
        super().__init__()
        cin, cout = cin // scale, cout // scale
        self.down = down
        if down:
            self.down_opt = Downsample()
        self.in_conv = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.block1 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.act = nn.ReLU()
        self.block2 = nn.Conv2d(cout, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        if self.down:
            x = self.down_opt(x)
        if self.in_conv is not None:
            x = self.in_conv(x)
        return x + self.block2(self.act(self.block1(x)))


class PatchCNN(nn.Module):
    """One scale's patch embedder: [P, 3, s, s] -> [P, 1280 / scale]."""

    def __init__(self, blocks: tuple[tuple[int, int, bool], ...], scale: int = 1):
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(8)
        self.conv_in = nn.Conv2d(3 * 64, 320 // scale, 3, 1, 1)
        self.body = nn.Sequential(*[ResBlock(i, o, d, scale) for i, o, d in blocks])
        self.pool = nn.AvgPool2d(2, 2)
        self.adapter = nn.Linear(1280 // scale, 1280 // scale)

    def forward(self, x: Tensor) -> Tensor:
        x = self.body(self.conv_in(self.unshuffle(x)))
        return self.adapter(self.pool(x).flatten(1))


class StyleAwareEncoder(nn.Module):
    """Style-aware encoder around a transformers `CLIPVisionModelWithProjection` (`image_encoder`).

    `width_div` shrinks the patch CNNs for tests (1 for the real model; the CNN width must then equal the
    CLIP hidden size, 1280 for ViT-H/14)."""

    def __init__(self, image_encoder: nn.Module, width_div: int = 1):
        super().__init__()
        self.image_encoder = image_encoder
        embed_dim = image_encoder.config.hidden_size
        if embed_dim != 1280 // width_div:
            raise ValueError(
                f"the CLIP hidden size {embed_dim} must equal the patch CNN width 1280 / {width_div}"
            )
        self.projection_dim = image_encoder.config.projection_dim
        self.cnn = nn.ModuleList([PatchCNN(b, width_div) for b in (_HIGH, _MIDDLE, _LOW)])
        self.style_embeddings = nn.ParameterList([nn.Parameter(torch.randn(embed_dim)) for _ in range(3)])
        self.position_embedding = nn.Embedding(NUM_POSITIONS, embed_dim)

    def forward(self, patches: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        """patches: ([B*8, 3, 128, 128], [B*16, 3, 64, 64], [B*32, 3, 32, 32]) in [-1, 1] -> [B, 3,
        proj_dim]."""
        batch = patches[0].shape[0] // 8
        tokens = []
        for cnn, cls, x in zip(self.cnn, self.style_embeddings, patches, strict=True):
            emb = cnn(x).view(batch, -1, cls.shape[0])  # [B, n, D]
            tokens += [cls.expand(batch, 1, -1), emb]
        h = torch.cat(tokens, dim=1) + self.position_embedding.weight[None]  # [B, 59, D]
        vm = self.image_encoder.vision_model
        h = vm.encoder(inputs_embeds=vm.pre_layrnorm(h))[0]
        pooled = vm.post_layernorm(h[:, list(CLASS_TOKEN_POSITIONS)])  # [B, 3, D]
        return self.image_encoder.visual_projection(pooled)  # [B, 3, proj_dim]


class ImageProjection(nn.Module):
    """One style embedding -> `n_tokens` cross-attention tokens: Linear + LayerNorm (StyleShot/IP-Adapter)."""

    def __init__(self, cross_attention_dim: int, embed_dim: int, n_tokens: int = 2):
        super().__init__()
        self.cross_attention_dim = cross_attention_dim
        self.n_tokens = n_tokens
        self.proj = nn.Linear(embed_dim, n_tokens * cross_attention_dim)
        self.norm = nn.LayerNorm(cross_attention_dim)

    def forward(self, x: Tensor) -> Tensor:  # [B, E] -> [B, n_tokens, C]
        return self.norm(self.proj(x).reshape(-1, self.n_tokens, self.cross_attention_dim))


# ---------------------------------------------------------------------------------------------- patches
def style_image_tensor(style_image: np.ndarray, size: int = 512) -> Tensor:
    """np.uint8 [H, W, 3] -> [1, 3, size, size] in [-1, 1]: resize short side to `size`, centre crop."""
    if style_image.ndim != 3 or style_image.shape[2] != 3 or style_image.dtype != np.uint8:
        raise ValueError(
            f"style_image must be np.uint8 [H, W, 3], got {style_image.dtype} {style_image.shape}"
        )
    x = torch.from_numpy(np.ascontiguousarray(style_image)).permute(2, 0, 1)[None].float() / 255.0
    h, w = x.shape[-2:]
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[..., top : top + size, left : left + size].clamp(0, 1) * 2 - 1


def _quadrants(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """[.., s, s] -> (top-left, bottom-left, top-right, bottom-right) halves (StyleShot's crop order)."""
    h = x.shape[-1] // 2
    return x[..., :h, :h], x[..., h:, :h], x[..., :h, h:], x[..., h:, h:]


def style_patches(image: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """[1, 3, S, S] -> (8 high [8, 3, S/4, S/4], 16 middle [16, 3, S/8, S/8], 32 low [32, 3, S/16, S/16]).

    Recursive quadrants: of each quarter's quadrants the diagonal two are high patches and the
    anti-diagonal two
    are split again (diagonal -> middle, anti-diagonal -> split again, diagonal -> low). Each scale's patches
    are shuffled (StyleShot shuffles them on every call; pass a generator for a fixed order)."""
    high, middle, low = [], [], []
    for q4 in _quadrants(image[0]):
        a, b, c, d = _quadrants(q4)
        high += [a, d]
        for q8 in (b, c):
            a2, b2, c2, d2 = _quadrants(q8)
            middle += [a2, d2]
            for q16 in (b2, c2):
                a3, _, _, d3 = _quadrants(q16)
                low += [a3, d3]
    out = []
    for group in (high, middle, low):
        t = torch.stack(group)
        out.append(t[torch.randperm(t.shape[0], generator=generator)])
    return out[0], out[1], out[2]
