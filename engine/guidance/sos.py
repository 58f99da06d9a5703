"""SOS (simultaneously optimized scales, from SGSST): multi-scale VGG19 style statistics + a content term.

Per scale (the render and its original halved while the short side stays >= `min_short_side`; during the
pretraining steps only one scale, the render at 0.5):
    style   Σ_l∈{r11,r21,r31,r41,r51}  w_G ||G - Ĝ||² / n_l² + w_μ ||μ - μ̂||² / n_l + w_σ ||σ - σ̂||² / n_l
            G = F Fᵀ / (H W), μ channel means, σ = sqrt(diag(G) - μ²), w_G = 1e3 / n_l², w_μ = w_σ = 1e4
    content w_c mean((F_r42 - F̂_r42)²) against the ORIGINAL render of the same view
The style image is resized so its short side matches the render's at each scale. Returns
{"sos_style", "sos_content"}, each averaged over scales.

Normalisation decision: SGSST uses Gatys' caffe VGG (BGR, x255, mean-subtracted). Our registry ships
torchvision's VGG19, trained on ImageNet-normalised RGB in [0, 1], so `normalization="imagenet"` is the
default;
"caffe" is kept for caffe-converted weights (features come out ~60x larger with torchvision weights there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import GuidanceBatch
from .model_common import ModelGuidance, load_state, style_to_tensor

VGG19_LAYOUT = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
)
LAYER_INDEX = {"r11": 1, "r21": 6, "r31": 11, "r41": 20, "r42": 22, "r51": 29}  # ReLU outputs in `features`
STYLE_LAYERS = ("r11", "r21", "r31", "r41", "r51")
CONTENT_LAYER = "r42"
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class SOSConfig:
    style_weight: float = 1.0
    """Multiplier of `sos_style`."""
    content_weight: float = 1.0
    """w_c: multiplier of `sos_content`."""
    mean_weight: float = 1e4
    """w_μ."""
    std_weight: float = 1e4
    """w_σ."""
    gram_weight: float = 1e3
    """Numerator of w_G = gram_weight / n_l²."""
    min_short_side: int = 512
    """Scales halve the render while its short side stays >= this (SGSST: above 511)."""
    pretrain_steps: int | None = None
    """Steps of the single-scale (0.5) pretraining phase; None = a quarter of the job's total steps."""
    pretrain_scale: float = 0.5
    """The one scale of the pretraining phase (StyleMe3D's optimize_size=0.5)."""
    normalization: str = "imagenet"
    """"imagenet" (torchvision weights) or "caffe" (Gatys' caffe-converted weights)."""
    models_dir: str | None = None
    """Local models folder (default: env SPLATBRUSH_MODELS, then the torch hub cache)."""


def vgg19_features(width_div: int = 1) -> nn.Sequential:
    """torchvision's VGG19 `features` up to relu5_1 (same indices), channel widths / width_div."""
    layers: list[nn.Module] = []
    c = 3
    for v in VGG19_LAYOUT:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            out = int(v) // width_div
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(inplace=False)]
            c = out
    return nn.Sequential(*layers[: LAYER_INDEX["r51"] + 1])


def load_vgg19_features(path) -> nn.Sequential:
    """VGG19 features from a torchvision-format state dict (`features.N.weight`); widths follow the file."""
    sd = {k[len("features.") :]: v for k, v in load_state(path).items() if k.startswith("features.")}
    if "0.weight" not in sd:
        raise ValueError(f"{path} is not a torchvision VGG19 state dict (no features.0.weight)")
    feats = vgg19_features(width_div=max(1, 64 // sd["0.weight"].shape[0]))
    feats.load_state_dict({k: v for k, v in sd.items() if int(k.split(".")[0]) < len(feats)}, strict=True)
    return feats


def sos_scales(
    h: int, w: int, step: int, pretrain_steps: int, min_short_side: int = 512, pretrain_scale: float = 0.5
) -> list[float]:
    """Scale factors of this step: [pretrain_scale] during pretraining, else 1, 1/2, 1/4, ... while the short
    side stays >= min_short_side (always at least [1.0])."""
    if step < pretrain_steps:
        return [pretrain_scale]
    scales = [1.0]
    while min(h, w) * scales[-1] / 2 >= min_short_side:
        scales.append(scales[-1] / 2)
    return scales


def _stats(f: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """[B, C, H, W] -> Gram [B, C, C], mean [B, C], std [B, C]."""
    b, c, h, w = f.shape
    x = f.reshape(b, c, h * w)
    gram = x @ x.transpose(1, 2) / (h * w)
    mu = x.mean(-1)
    sigma = (torch.diagonal(gram, dim1=1, dim2=2) - mu**2).clamp_min(1e-8).sqrt()
    return gram, mu, sigma


class SOSGuidance(ModelGuidance):
    """Multi-scale VGG19 style statistics (Gram, mean, std) + r42 content; returns sos_style, sos_content.
    `models`: VGG19 `features` (default: loaded from the registry)."""

    name = "sos"
    options_cls = SOSConfig

    def setup(self, style_image: np.ndarray, models: nn.Module | None) -> None:
        if self.cfg.normalization not in ("imagenet", "caffe"):
            raise ValueError(
                f"SOSConfig.normalization = {self.cfg.normalization!r}: use 'imagenet' or 'caffe'"
            )
        if models is None:
            from ..models import require

            models = load_vgg19_features(
                require("sos", self.cfg.models_dir)["vgg19"].path("vgg19-dcbb9e9d.pth")
            )
        self.vgg = models.to(self.device).eval().requires_grad_(False)
        self.style = style_to_tensor(style_image, self.device)
        self._targets: dict[tuple[int, int], list[tuple[Tensor, Tensor, Tensor]]] = {}

    def normalize(self, x: Tensor) -> Tensor:
        if self.cfg.normalization == "caffe":
            mean = x.new_tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
            return x.flip(1) * 255.0 - mean
        return (x - x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / x.new_tensor(IMAGENET_STD).view(
            1, 3, 1, 1
        )

    def features(self, x: Tensor, names: tuple[str, ...]) -> dict[str, Tensor]:
        """VGG ReLU outputs `names` of [B, 3, H, W] in [0, 1]."""
        want = {LAYER_INDEX[n]: n for n in names}
        out: dict[str, Tensor] = {}
        h = self.normalize(x)
        for i, layer in enumerate(self.vgg):
            h = layer(h)
            if i in want:
                out[want[i]] = h
                if len(out) == len(want):
                    break
        return out

    def _style_targets(self, h: int, w: int) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Style statistics per style layer for a render of size (h, w): style short side resized to match."""
        if (h, w) not in self._targets:
            sh, sw = self.style.shape[-2:]
            s = min(h, w) / min(sh, sw)
            style = F.interpolate(
                self.style,
                size=(max(1, round(sh * s)), max(1, round(sw * s))),
                mode="bilinear",
                align_corners=False,
                antialias=s < 1,
            )
            with torch.no_grad():
                f = self.features(style, STYLE_LAYERS)
                self._targets[(h, w)] = [_stats(f[n]) for n in STYLE_LAYERS]
        return self._targets[(h, w)]

    def scales(self, batch: GuidanceBatch) -> list[float]:
        info = batch.info
        pre = self.cfg.pretrain_steps if self.cfg.pretrain_steps is not None else info.total_steps // 4
        h, w = batch.images.shape[-2:]
        return sos_scales(h, w, info.step, pre, self.cfg.min_short_side, self.cfg.pretrain_scale)

    def __call__(self, batch: GuidanceBatch) -> dict[str, Tensor]:
        cfg = self.cfg
        scales = self.scales(batch)
        style_total = batch.images.new_zeros(())
        content_total = batch.images.new_zeros(())
        for s in scales:
            x, orig = batch.images, batch.originals
            if s != 1.0:
                size = (max(8, round(x.shape[-2] * s)), max(8, round(x.shape[-1] * s)))
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
                orig = F.interpolate(orig, size=size, mode="bilinear", align_corners=False, antialias=True)
            feats = self.features(x, (*STYLE_LAYERS, CONTENT_LAYER))
            for name, (g_t, mu_t, sd_t) in zip(STYLE_LAYERS, self._style_targets(*x.shape[-2:]), strict=True):
                g, mu, sd = _stats(feats[name])
                n = g.shape[-1]
                style_total = (
                    style_total
                    + (
                        cfg.gram_weight / n**2 * ((g - g_t) ** 2).sum((1, 2)) / n**2
                        + cfg.mean_weight * ((mu - mu_t) ** 2).sum(1) / n
                        + cfg.std_weight * ((sd - sd_t) ** 2).sum(1) / n
                    ).mean()
                )
            with torch.no_grad():
                f_orig = self.features(orig.to(x.dtype), (CONTENT_LAYER,))[CONTENT_LAYER]
            content_total = content_total + ((feats[CONTENT_LAYER] - f_orig) ** 2).mean()
        k = len(scales)
        return {
            "sos_style": cfg.style_weight * style_total / k,
            "sos_content": cfg.content_weight * content_total / k,
        }
