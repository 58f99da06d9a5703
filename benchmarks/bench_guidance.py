"""Time per step (forward + backward to the render) of each model-based guidance module.

    .venv/bin/python benchmarks/bench_guidance.py [--size 64] [--batch 1] [--steps 5] [--real] [--device cpu]

Default: the tiny random-weight models of `engine.testing.tiny_models` (the real loading and forward code, toy
widths), on CPU. `--real` (meant for a GPU; default on when CUDA is available) builds the REAL
architectures with random weights (SD1.5 UNet/VAE/text encoder + StyleShot encoder on a CLIP-H/14 tower,
VGG19, CSD ViT-L/14, open_clip ViT-B/16), so the timings are those of the real models without downloading
them; fp16 for DSSD on CUDA.
Prints build time and the median step time per module.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

from engine.guidance.base import GuidanceBatch, StepInfo


def real_modules(device: torch.device, style: np.ndarray) -> dict:
    """Real-size architectures, random weights, injected through each module's `models=` argument."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    from engine.guidance import csd, dssd, quality, sos
    from engine.guidance.styleshot import StyleAwareEncoder, StyleShotAdapter, install_style_attention
    from engine.testing.tiny_models import _tiny_clip_tokenizer_files

    out = {}
    t = time.perf_counter()
    unet = UNet2DConditionModel(
        sample_size=64,
        cross_attention_dim=768,
        attention_head_dim=8,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
    )
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        latent_channels=4,
        layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
        )
    )
    vcfg = CLIPVisionConfig(
        hidden_size=1280,
        intermediate_size=5120,
        num_hidden_layers=32,
        num_attention_heads=16,
        patch_size=14,
        image_size=224,
        projection_dim=1024,
    )
    encoder = StyleAwareEncoder(CLIPVisionModelWithProjection(vcfg))
    processors = install_style_attention(unet)
    adapter = StyleShotAdapter(encoder, 768, processors)
    tok_dir = tempfile.mkdtemp()
    _tiny_clip_tokenizer_files(__import__("pathlib").Path(tok_dir))
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    for m in (unet, vae, text, adapter):
        m.requires_grad_(False).eval().to(device)
    for m in (unet, vae, text):
        m.to(dtype)
    models = dssd.DSSDModels(
        unet,
        vae,
        text,
        tokenizer,
        DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
        adapter,
    )
    out["dssd"] = (
        dssd.DSSDGuidance(dssd.DSSDConfig(), style, device, models=models),
        time.perf_counter() - t,
    )
    t = time.perf_counter()
    out["sos"] = (
        sos.SOSGuidance(sos.SOSConfig(), style, device, models=sos.vgg19_features()),
        time.perf_counter() - t,
    )
    t = time.perf_counter()
    out["csd"] = (
        csd.CSDGuidance(csd.CSDConfig(), style, device, models=csd.build_csd()),
        time.perf_counter() - t,
    )
    t = time.perf_counter()
    out["quality"] = (
        quality.QualityGuidance(quality.QualityConfig(), style, device, models=quality.build_open_clip()),
        time.perf_counter() - t,
    )
    return out


def tiny_modules(device: torch.device, style: np.ndarray) -> dict:
    from engine.guidance import csd, dssd, quality, sos
    from engine.testing.tiny_models import write_tiny_models

    root = write_tiny_models(tempfile.mkdtemp())
    opts = {"models_dir": str(root)}
    out = {}
    for name, mod, cfg in (
        ("dssd", dssd, dssd.DSSDConfig(resolution=64, **opts)),
        ("sos", sos, sos.SOSConfig(min_short_side=32, pretrain_steps=0, **opts)),
        ("csd", csd, csd.CSDConfig(**opts)),
        ("quality", quality, quality.QualityConfig(**opts)),
    ):
        t = time.perf_counter()
        out[name] = (mod.build(cfg, style, device), time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=None, help="render size (default 64 tiny, 512 real)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--real", action="store_true", default=torch.cuda.is_available())
    args = ap.parse_args()
    device = torch.device(args.device)
    size = args.size or (512 if args.real else 64)
    style = np.random.default_rng(0).integers(0, 256, (384, 512, 3), dtype=np.uint8)
    modules = real_modules(device, style) if args.real else tiny_modules(device, style)
    print(
        f"{'real' if args.real else 'tiny'} models on {device}, {args.batch} x {size}x{size} renders, "
        f"torch threads {torch.get_num_threads()}"
    )
    for name, (module, build_s) in modules.items():
        times = []
        for step in range(args.steps + 1):
            images = torch.rand(args.batch, 3, size, size, device=device, requires_grad=True)
            info = StepInfo(
                step=step, total_steps=100, phase="bench", mode="global", alpha=step / (args.steps + 1)
            )
            batch = GuidanceBatch(images, torch.rand_like(images), torch.ones_like(images[:, :1]), info)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            loss = sum(module(batch).values())
            loss.backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if step:  # the first step warms up
                times.append(time.perf_counter() - t)
        print(
            f"  {name:<8} build {build_s:6.2f} s   step {statistics.median(times) * 1000:8.1f} ms (median of "
            f"{len(times)})"
        )


if __name__ == "__main__":
    main()
