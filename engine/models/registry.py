"""The models the model-based guidance needs: a plain dict of specs, nothing is loaded here.

Each spec says where the weights come from (a Hugging Face hub repo, or torchvision), which files of it we
need (relative paths; "a|b" means either file is enough), its download size, licence, and which guidance
modules need it. `GUIDANCE_MODELS` says which models each guidance module ("dssd", "sos", "csd", "quality")
needs; `engine.models.available(name)` checks exactly those files.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    name: str
    """Our short name (the folder under the models dir, the argument of `splatbrush models download`)."""
    source: str
    """"hf" (Hugging Face hub repo) or "torchvision" (torchvision's weight URL, cached in the torch hub
    dir)."""
    repo_id: str
    """Hub repo id ("owner/name"), or for torchvision the weights enum name."""
    files: tuple[str, ...]
    """Files needed, relative to the repo root; "a|b" = either is enough. `available` checks these."""
    size_gb: float
    """Approximate download size of `files` in GB."""
    licence: str
    used_by: tuple[str, ...]
    """Guidance modules that need it."""
    description: str
    url: str = ""
    """For torchvision weights: the download URL (its basename is the cached file name)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit); None = the default branch."""


_SD15_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
)

REGISTRY: dict[str, ModelSpec] = {
    "sd15": ModelSpec(
        name="sd15",
        source="hf",
        repo_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
        files=_SD15_FILES,
        size_gb=4.3,
        licence="CreativeML OpenRAIL-M",
        used_by=("dssd",),
        description="Stable Diffusion 1.5 (mirror of the removed runwayml repo): UNet, VAE, text encoder",
    ),
    "styleshot": ModelSpec(
        name="styleshot",
        source="hf",
        repo_id="Gaojunyao/StyleShot",
        files=("pretrained_weight/ip.bin", "pretrained_weight/style_aware_encoder.bin"),
        size_gb=4.7,  # estimate: CLIP-H tower + patch CNNs (~3.2 GB fp32) + content ControlNet (~1.5 GB)
        licence="Apache-2.0 (StyleShot code and weights; check the model card)",
        used_by=("dssd",),
        description="StyleShot: style-aware encoder (incl. its fine-tuned CLIP-H tower) + IP attention "
        "adapters",
    ),
    "clip-vit-h14": ModelSpec(
        name="clip-vit-h14",
        source="hf",
        repo_id="laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
        # StyleShot's style_aware_encoder.bin holds the (fine-tuned) vision tower weights, so only the
        # transformers config is needed to build the architecture; the 3.9 GB weights are not downloaded.
        files=("config.json",),
        size_gb=0.001,
        licence="MIT",
        used_by=("dssd",),
        description="CLIP ViT-H/14 laion2B: architecture config of StyleShot's encoder transformer",
    ),
    "vgg19": ModelSpec(
        name="vgg19",
        source="torchvision",
        repo_id="VGG19_Weights.IMAGENET1K_V1",
        files=("vgg19-dcbb9e9d.pth",),
        size_gb=0.55,
        licence="CC-BY-4.0 (VGG weights, Simonyan & Zisserman); torchvision code BSD-3",
        used_by=("sos",),
        description="VGG19 ImageNet classifier (torchvision); SOS uses its conv features r11..r51, r42",
        url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    ),
    "csd": ModelSpec(
        name="csd",
        source="hf",
        repo_id="tomg-group-umd/CSD-ViT-L",
        files=("pytorch_model.bin",),
        size_gb=2.4,
        licence="CC-BY-4.0",
        used_by=("csd",),
        description="Contrastive Style Descriptor: CLIP ViT-L/14 vision tower + style and content heads",
    ),
    "clip-vit-b16": ModelSpec(
        name="clip-vit-b16",
        source="hf",
        repo_id="timm/vit_base_patch16_clip_224.openai",
        files=("open_clip_model.safetensors|open_clip_pytorch_model.bin",),
        size_gb=0.6,
        licence="MIT (OpenAI CLIP)",
        used_by=("quality", "purify"),
        description="OpenAI CLIP ViT-B/16 in open_clip form: CLIP-IQA prompts and style purification",
    ),
}

GUIDANCE_MODELS: dict[str, tuple[str, ...]] = {
    "dssd": ("sd15", "styleshot", "clip-vit-h14"),
    "sos": ("vgg19",),
    "csd": ("csd",),
    "quality": ("clip-vit-b16",),
    "purify": ("clip-vit-b16",),
}
"""Models each guidance module needs (all of them must be present)."""


def spec(name: str) -> ModelSpec:
    """The spec of model `name`; a ValueError listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}: known models are {', '.join(REGISTRY)}") from None
