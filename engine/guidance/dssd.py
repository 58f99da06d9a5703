"""DSSD: dynamic style score distillation with StyleShot on Stable Diffusion 1.5 (StyleMe3D, see method.md).

Per step, for the batch's renders x (differentiable w.r.t. the SH colours):
    z     = VAE(resize(x, 512) * 2 - 1).mean * scaling_factor                 # [B, 4, 64, 64]
    t     = clip(round((1 - α^0.5) T), 0.02 T, 0.75 T)                           # α = StepInfo.alpha
    Δλ    = max(7.5, λ_max α²)
    z_t   = sqrt(ᾱ_t) z + sqrt(1 - ᾱ_t) ε
    ε_D   = (1 - Δλ) ε(z_t | text, null style) + Δλ ε(z_t | text, style)
    grad  = w(t) (ε_D - ε),  w(t) = 1 - ᾱ_t
    loss  = 0.5 || z - (z - grad).detach() ||² / B        (its gradient w.r.t. z is grad / B)
The "text only" branch feeds StyleShot's null style tokens (the projection of a zero style embedding),
which is what StyleShot itself uses as its unconditional style. Noise: one shared sample for every view
of a step in mode "global-fix", independent samples otherwise; seeded by (seed, step) so a resumed job
repeats it.

Construct with `DSSDGuidance(config, style_image, device, models=None)`; models load from the registry
(`sd15`, `styleshot`, `clip-vit-h14`) unless a `DSSDModels` is injected. fp16 on CUDA.
`make_rgb_targets(images)` gives 2D-stylized views (StyleShot img2img) for the L_RGB phases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import GuidanceBatch
from .model_common import ModelGuidance, half_on_cuda
from .styleshot import StyleShotAdapter, load_styleshot, set_style_scale, style_image_tensor, style_patches


@dataclass
class DSSDConfig:
    prompt: str = "best quality, high quality"
    """Text prompt of both branches (the content words of the scene work well, e.g. "a donut")."""
    negative_prompt: str = "monochrome, lowres, bad anatomy, worst quality, low quality"
    """Negative prompt of the unconditional branch of `make_rgb_targets` (StyleShot's default)."""
    resolution: int = 512
    """Renders are resized to this square size before the VAE (512 for SD1.5)."""
    t_min: float = 0.02
    """Lowest timestep as a fraction of T."""
    t_max: float = 0.75
    """Highest timestep as a fraction of T."""
    lambda_max: float = 20.0
    """λ_max of the dynamic guidance max(floor, λ_max α²) (the paper: 20 on NeRF-synthetic, 7.5-30
    ablated)."""
    guidance_floor: float = 7.5
    """Lowest guidance scale."""
    style_scale: float = 1.0
    """λ of the style cross-attention: Attn(text) + λ Attn(style)."""
    weighting: str = "1-alpha_bar"
    """w(t): "1-alpha_bar" (threestudio's default) or "uniform"."""
    weight: float = 1.0
    """Multiplier of the returned `dssd` term."""
    seed: int = 0
    """Seeds the style patch shuffle and the per-step noise."""
    half_precision: bool = True
    """fp16 models on CUDA (always fp32 on CPU)."""
    models_dir: str | None = None
    """Local models folder (default: env SPLATBRUSH_MODELS, then the Hugging Face cache)."""
    rgb_strength: float = 0.6
    """make_rgb_targets: img2img strength (fraction of the noise schedule re-generated)."""
    rgb_steps: int = 20
    """make_rgb_targets: DDIM steps over the full schedule (about strength * steps are run)."""
    rgb_guidance: float = 7.5
    """make_rgb_targets: classifier-free guidance scale."""


def dssd_timestep(alpha: float, T: int = 1000, t_min: float = 0.02, t_max: float = 0.75) -> int:
    """t = round((1 - α^0.5) T) clipped to [t_min T, t_max T] (and to T - 1)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    t = round((1.0 - math.sqrt(alpha)) * T)
    lo, hi = round(t_min * T), min(round(t_max * T), T - 1)
    return int(min(max(t, lo), hi))


def dssd_guidance(alpha: float, lambda_max: float = 20.0, floor: float = 7.5) -> float:
    """Δλ = max(floor, λ_max α²)."""
    return float(max(floor, lambda_max * alpha * alpha))


@dataclass
class DSSDModels:
    """Everything DSSD runs: diffusers UNet/VAE/scheduler, transformers text encoder/tokenizer, StyleShot."""

    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object  # a diffusers DDPMScheduler (training noise schedule)
    adapter: StyleShotAdapter
    extra: dict = field(default_factory=dict)


def load_dssd_models(
    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, models_dir: str | None = None
) -> DSSDModels:
    """Load SD1.5 + StyleShot from the registry locations (ModelMissingError if any is missing)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from ..models import require

    found = require("dssd", models_dir)
    sd = found["sd15"].root
    # load the UNet in fp32 (StyleShot's processors are installed and loaded in fp32), cast after
    unet = UNet2DConditionModel.from_pretrained(sd, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(sd, subfolder="vae", torch_dtype=dtype)
    text_encoder = CLIPTextModel.from_pretrained(sd, subfolder="text_encoder")
    tokenizer = CLIPTokenizer.from_pretrained(sd, subfolder="tokenizer")
    scheduler = DDPMScheduler.from_pretrained(sd, subfolder="scheduler")
    ss = found["styleshot"]
    adapter = load_styleshot(
        unet,
        ss.path("pretrained_weight/ip.bin"),
        ss.path("pretrained_weight/style_aware_encoder.bin"),
        found["clip-vit-h14"].root,
    )
    for m in (unet, vae, text_encoder, adapter):
        m.requires_grad_(False).eval().to(device)
    unet.to(dtype)
    text_encoder.to(dtype)
    return DSSDModels(unet, vae, text_encoder, tokenizer, scheduler, adapter)


class DSSDGuidance(ModelGuidance):
    """Dynamic style score distillation; returns {"dssd": loss}. `models`: DSSDModels (default: loaded
    from the registry)."""

    name = "dssd"
    options_cls = DSSDConfig

    def setup(self, style_image: np.ndarray, models: DSSDModels | None) -> None:
        self.seed = int(self.cfg.seed) + 7919 * self.job_seed
        if models is None:
            dtype = half_on_cuda(self.device, self.cfg.half_precision)
            models = load_dssd_models(self.device, dtype, self.cfg.models_dir)
        self.m = models
        self.dtype = next(models.unet.parameters()).dtype
        set_style_scale(models.adapter.processors, self.cfg.style_scale)
        sched = models.scheduler
        self.T = int(sched.config.num_train_timesteps)
        self.alphas_cumprod = sched.alphas_cumprod.to(self.device, torch.float32)  # [T]
        self.scaling = float(getattr(models.vae.config, "scaling_factor", 0.18215))
        with torch.no_grad():
            g = torch.Generator().manual_seed(self.seed)
            patches = style_patches(style_image_tensor(style_image), g)
            enc_dtype = next(models.adapter.parameters()).dtype
            patches = tuple(p.to(self.device, enc_dtype) for p in patches)
            style, null_style = models.adapter.style_tokens(patches)  # [1, 6, C] each, cached for the job
            self.style_tokens = style.to(self.dtype)
            self.null_style_tokens = null_style.to(self.dtype)
            self.text = self._encode_text(self.cfg.prompt)  # [1, 77, C]
            self.negative_text = self._encode_text(self.cfg.negative_prompt)

    # ------------------------------------------------------------------------------------------ pieces
    def _encode_text(self, prompt: str) -> Tensor:
        tok = self.m.tokenizer
        ids = tok(
            [prompt],
            padding="max_length",
            max_length=tok.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)
        return self.m.text_encoder(ids)[0].to(self.dtype)

    def encode(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] in [0, 1] -> latents [B, 4, r/8, r/8] (VAE posterior mean x scaling factor)."""
        r = self.cfg.resolution
        x = F.interpolate(images, size=(r, r), mode="bilinear", align_corners=False) * 2 - 1
        return self.m.vae.encode(x.to(self.dtype)).latent_dist.mean * self.scaling

    def predict_noise(self, z_t: Tensor, t: Tensor, guidance: float) -> Tensor:
        """ε_DSSD = (1 - Δλ) ε(text, null style) + Δλ ε(text, style), one batched UNet call. t: [B]."""
        b = z_t.shape[0]
        text_only = torch.cat([self.text, self.null_style_tokens], 1).expand(b, -1, -1)
        with_style = torch.cat([self.text, self.style_tokens], 1).expand(b, -1, -1)
        eps = self.m.unet(
            torch.cat([z_t, z_t]).to(self.dtype),
            torch.cat([t, t]),
            encoder_hidden_states=torch.cat([text_only, with_style]),
        ).sample.float()
        eps_text, eps_style = eps.chunk(2)
        return (1.0 - guidance) * eps_text + guidance * eps_style

    def weight(self, t: Tensor) -> Tensor:
        if self.cfg.weighting == "uniform":
            return torch.ones_like(t, dtype=torch.float32)
        if self.cfg.weighting == "1-alpha_bar":
            return 1.0 - self.alphas_cumprod[t]
        raise ValueError(f"DSSDConfig.weighting = {self.cfg.weighting!r}: use '1-alpha_bar' or 'uniform'")

    def _noise(self, shape: tuple[int, ...], step: int, shared: bool) -> Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        n = torch.randn((1, *shape[1:]) if shared else shape, generator=g)
        return n.expand(shape).to(self.device) if shared else n.to(self.device)

    # ------------------------------------------------------------------------------------------ loss
    def __call__(self, batch: GuidanceBatch) -> dict[str, Tensor]:
        info = batch.info
        z = self.encode(batch.images).float()  # [B, 4, h, w]
        b = z.shape[0]
        t_int = dssd_timestep(float(info.alpha), self.T, self.cfg.t_min, self.cfg.t_max)
        guidance = dssd_guidance(float(info.alpha), self.cfg.lambda_max, self.cfg.guidance_floor)
        t = torch.full((b,), t_int, device=self.device, dtype=torch.long)
        noise = self._noise(tuple(z.shape), int(info.step), shared=info.mode == "global-fix")
        with torch.no_grad():
            a = self.alphas_cumprod[t].view(b, 1, 1, 1)
            z_t = a.sqrt() * z + (1 - a).sqrt() * noise
            eps = self.predict_noise(z_t, t, guidance)
            grad = torch.nan_to_num(self.weight(t).view(b, 1, 1, 1) * (eps - noise))
        target = (z - grad).detach()
        loss = 0.5 * F.mse_loss(z, target, reduction="sum") / b
        return {"dssd": self.cfg.weight * loss}

    # ------------------------------------------------------------------------------------------ RGB targets
    @torch.no_grad()
    def make_rgb_targets(self, images: Tensor, seed: int | None = None) -> Tensor:
        """2D-stylized versions of `images` ([B, 3, H, W] in [0, 1]) by StyleShot img2img (DDIM,
        classifier-free
        guidance of [text; style] against [negative text; null style]); same size, in [0, 1], no grad."""
        from diffusers import DDIMScheduler

        cfg = self.cfg
        h, w = images.shape[-2:]
        z = self.encode(images.detach()).float()
        b = z.shape[0]
        sched = DDIMScheduler.from_config(self.m.scheduler.config)
        sched.set_timesteps(cfg.rgb_steps, device=self.device)
        start = max(0, min(cfg.rgb_steps - 1, round(cfg.rgb_steps * (1.0 - cfg.rgb_strength))))
        timesteps = sched.timesteps[start:]
        g = torch.Generator().manual_seed(self.seed if seed is None else seed)
        z = sched.add_noise(z, torch.randn(z.shape, generator=g).to(self.device), timesteps[:1].repeat(b))
        cond = torch.cat([self.text, self.style_tokens], 1).expand(b, -1, -1)
        uncond = torch.cat([self.negative_text, self.null_style_tokens], 1).expand(b, -1, -1)
        for t in timesteps:
            tt = t.repeat(b).to(self.device)
            eps = self.m.unet(
                torch.cat([z, z]).to(self.dtype),
                torch.cat([tt, tt]),
                encoder_hidden_states=torch.cat([uncond, cond]),
            ).sample.float()
            e_u, e_c = eps.chunk(2)
            z = sched.step(e_u + cfg.rgb_guidance * (e_c - e_u), t, z).prev_sample
        x = self.m.vae.decode((z / self.scaling).to(self.dtype)).sample.float()
        x = ((x + 1) / 2).clamp(0, 1)
        return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)

    def make_targets(self, originals: Tensor, masks: Tensor | None = None) -> Tensor:
        """The stylization loop's RGB-target hook: stylize original renders [B, 3, H, W]; outside the object
        mask [B, 1, H, W] the original is kept (the RGB loss is masked anyway)."""
        out = self.make_rgb_targets(originals)
        return out if masks is None else out * masks + originals * (1 - masks)
