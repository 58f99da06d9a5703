"""Tiny random-weight stand-ins of every registry model, written in the SAME file layout as the real ones, so
tests and benchmarks run the real loading and forward code (`write_tiny_models(root)` then models_dir=root).

Nothing is downloaded: the tokenizer is a small byte-level CLIP BPE vocabulary written here; configs are small
versions of the real architectures (SD1.5 UNet/VAE/text encoder, CLIP-H vision config, torchvision
VGG19 layout,
CSD's CLIP ViT-L tower, open_clip ViT-B/16).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..models.loading import ARCH_FILE  # architecture override read by the csd / quality loaders


def _tiny_clip_tokenizer_files(folder: Path) -> None:
    """A CLIP BPE tokenizer with single-character tokens (no merges beyond one) + the special tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!-' ")
    vocab: dict[str, int] = {}
    for c in chars:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    cfg = {
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "tokenizer_class": "CLIPTokenizer",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    (folder / "special_tokens_map.json").write_text(
        json.dumps({k: cfg[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")})
    )


def write_tiny_sd15(folder: Path, seed: int = 0) -> None:
    """Tiny SD1.5 in diffusers folder layout (unet, vae, text_encoder, tokenizer, scheduler,
    model_index.json)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=24,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=8,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=100,
            hidden_size=24,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=24,
            bos_token_id=84,
            eos_token_id=85,
            pad_token_id=85,
        )
    )
    sched = DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
    )
    folder.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    text.save_pretrained(folder / "text_encoder")
    sched.save_pretrained(folder / "scheduler")
    _tiny_clip_tokenizer_files(folder / "tokenizer")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))


def tiny_clip_h_config():
    """A CLIPConfig shaped like laion's CLIP-ViT-H-14 config.json (full config with a vision_config)."""
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "vocab_size": 100,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 28,
            "patch_size": 14,
        },
        projection_dim=32,
    )


def write_tiny_styleshot(folder: Path, clip_folder: Path, sd15_folder: Path, seed: int = 0) -> None:
    """StyleShot's two files with StyleShot's key names, for the tiny SD1.5 UNet and tiny CLIP-H config."""
    from diffusers import UNet2DConditionModel

    from ..guidance.styleshot import ImageProjection, build_style_encoder
    from ..guidance.styleshot.attention import cross_attention_hidden_size

    torch.manual_seed(seed)
    cfg = tiny_clip_h_config()
    cfg.save_pretrained(clip_folder)
    # the projection size from the top-level config (its vision_config keeps transformers' default): the
    # loader must take it from the checkpoint, as for a real CLIP config.json that lacks it in vision_config
    encoder = build_style_encoder(clip_folder, projection_dim=cfg.projection_dim)
    weights = folder / "pretrained_weight"
    weights.mkdir(parents=True, exist_ok=True)
    sd = encoder.state_dict()
    sd["position_ids"] = torch.arange(59)[
        None
    ]  # StyleShot's checkpoints may carry the buffer: must be dropped
    torch.save(sd, weights / "style_aware_encoder.bin")
    unet = UNet2DConditionModel.from_pretrained(sd15_folder / "unet")
    cad = unet.config.cross_attention_dim
    ip: dict[str, torch.Tensor] = {}
    for j in range(3):
        for k, v in ImageProjection(cad, encoder.projection_dim, 2).state_dict().items():
            ip[f"style_image_proj_modules.{j}.{k}"] = v
    for i, name in enumerate(unet.attn_processors):
        if name.endswith("attn2.processor"):
            hidden = cross_attention_hidden_size(unet, name)
            ip[f"adapter_modules.{i}.to_k_ip.weight"] = torch.randn(hidden, cad) / cad**0.5
            ip[f"adapter_modules.{i}.to_v_ip.weight"] = torch.randn(hidden, cad) / cad**0.5
    ip["controlnet.conv_in.weight"] = torch.zeros(1)  # content-fusion encoder: carried, unused by DSSD
    torch.save(ip, weights / "ip.bin")


def write_tiny_vgg19(folder: Path, width_div: int = 16, seed: int = 0) -> None:
    """torchvision VGG19 layout (`features.N.weight`, classifier dropped) with channel widths / width_div."""
    from ..guidance.sos import vgg19_features

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    feats = vgg19_features(width_div=width_div)
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, folder / "vgg19-dcbb9e9d.pth")


TINY_CSD_ARCH = {"width": 64, "layers": 2, "heads": 4, "patch_size": 14, "image_size": 224, "output_dim": 48}
TINY_CLIP_B16_ARCH = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def write_tiny_csd(folder: Path, seed: int = 0) -> None:
    """CSD checkpoint layout: {"model_state_dict": {"module.backbone.*", "module.last_layer_style", ...}}."""
    from ..guidance.csd import build_csd

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    model = build_csd(TINY_CSD_ARCH)
    sd = {f"module.{k}": v for k, v in model.state_dict().items()}
    # like the real checkpoint: numpy scalars beside the state dict (must load with weights_only=True)
    torch.save(
        {"model_state_dict": sd, "epoch": np.int64(0), "loss": np.float64(1.5)}, folder / "pytorch_model.bin"
    )
    (folder / ARCH_FILE).write_text(json.dumps(TINY_CSD_ARCH))


def write_tiny_clip_b16(folder: Path, seed: int = 0) -> None:
    """open_clip hub layout: open_clip_pytorch_model.bin (+ our architecture override)."""
    from ..guidance.quality import build_open_clip

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    model = build_open_clip(TINY_CLIP_B16_ARCH)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    (folder / ARCH_FILE).write_text(json.dumps(TINY_CLIP_B16_ARCH))


def write_tiny_models(root: str | Path, names: tuple[str, ...] | None = None) -> Path:
    """Write tiny versions of the registry models `names` (default: all) under `root/<name>/`; returns
    root."""
    root = Path(root)
    names = names or ("sd15", "styleshot", "clip-vit-h14", "vgg19", "csd", "clip-vit-b16")
    if "styleshot" in names or "sd15" in names:
        write_tiny_sd15(root / "sd15")
    if "styleshot" in names or "clip-vit-h14" in names:
        write_tiny_styleshot(root / "styleshot", root / "clip-vit-h14", root / "sd15")
    if "vgg19" in names:
        write_tiny_vgg19(root / "vgg19")
    if "csd" in names:
        write_tiny_csd(root / "csd")
    if "clip-vit-b16" in names:
        write_tiny_clip_b16(root / "clip-vit-b16")
    return root
