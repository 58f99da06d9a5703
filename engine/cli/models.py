"""`splatbrush models list|download|verify`: the models of the model-based guidance (see docs/models.md).

    splatbrush models list [--json]              names, sizes, licences, present or not, and where
    splatbrush models download NAME... | all     fetch through huggingface_hub (allow_patterns) / torchvision
    splatbrush models verify [NAME...]           load each present model's files (state dicts, configs)
All take --models-dir DIR (default: env SPLATBRUSH_MODELS, then the Hugging Face / torch hub caches).
`list` and `verify` never use the network.
"""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="list, download or verify the models of the model-based guidance",
        description="Models for DSSD/StyleShot, SOS (VGG19), CSD and CLIP-IQA. Weights are looked up in "
        "--models-dir (or $SPLATBRUSH_MODELS), then the Hugging Face and torch hub caches.",
    )
    p.add_argument("action", choices=("list", "download", "verify"))
    p.add_argument("names", nargs="*", help="model names (see `list`); 'all' for every model")
    p.add_argument("--models-dir", default=None, help="local models folder (default: $SPLATBRUSH_MODELS)")
    p.add_argument("--json", action="store_true", help="list: print JSON")
    p.set_defaults(func=run)


def _names(args: argparse.Namespace) -> list[str]:
    from ..models import REGISTRY, spec

    if not args.names or args.names == ["all"]:
        return list(REGISTRY)
    for n in args.names:
        spec(n)  # ValueError naming the known models
    return list(args.names)


def _rows(models_dir: str | None) -> list[dict]:
    from ..guidance.registry import used_by
    from ..models import REGISTRY, ModelMissingError, resolve

    rows = []
    for name, s in REGISTRY.items():
        try:
            r = resolve(name, models_dir)
            present, where = True, f"{r.where}: {r.root}"
        except ModelMissingError as e:
            present, where = False, "missing: " + ", ".join(e.missing)
        rows.append(
            {
                "name": name,
                "repo": s.repo_id,
                "size_gb": s.size_gb,
                "licence": s.licence,
                "used_by": list(used_by(name)),
                "present": present,
                "where": where,
            }
        )
    return rows


def _verify(name: str, models_dir: str | None) -> str:
    """Load the model's files (no forward pass); returns a short description."""
    from ..models import resolve

    r = resolve(name, models_dir)
    if name == "sd15":
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        UNet2DConditionModel.from_pretrained(r.root, subfolder="unet")
        AutoencoderKL.from_pretrained(r.root, subfolder="vae")
        CLIPTextModel.from_pretrained(r.root, subfolder="text_encoder")
        CLIPTokenizer.from_pretrained(r.root, subfolder="tokenizer")
        DDPMScheduler.from_pretrained(r.root, subfolder="scheduler")
        return "unet, vae, text encoder, tokenizer, scheduler load"
    if name == "styleshot":
        from diffusers import UNet2DConditionModel

        from ..guidance.styleshot import load_styleshot

        sd15, clip = resolve("sd15", models_dir), resolve("clip-vit-h14", models_dir)
        unet = UNet2DConditionModel.from_pretrained(sd15.root, subfolder="unet")
        load_styleshot(
            unet,
            r.path("pretrained_weight/ip.bin"),
            r.path("pretrained_weight/style_aware_encoder.bin"),
            clip.root,
        )
        return "style-aware encoder and IP adapters load into the SD1.5 UNet (strict)"
    if name == "clip-vit-h14":
        from transformers import CLIPVisionConfig

        c = CLIPVisionConfig.from_pretrained(str(r.root))
        return f"vision config: hidden {c.hidden_size}, {c.num_hidden_layers} layers, proj {c.projection_dim}"
    if name == "vgg19":
        from ..guidance.sos import load_vgg19_features

        load_vgg19_features(r.path("vgg19-dcbb9e9d.pth"))
        return "VGG19 features load"
    if name == "csd":
        from ..guidance.csd import load_csd_from_registry

        load_csd_from_registry(models_dir)
        return "CSD backbone + style/content heads load (strict)"
    if name == "clip-vit-b16":
        from ..guidance.quality import load_open_clip_from_registry

        load_open_clip_from_registry(name, models_dir)
        return "open_clip ViT-B/16 loads (strict)"
    if name == "magenta":
        from ..models.magenta import load_magenta

        nets = load_magenta("cpu", models_dir)
        return f"ONNX SHA-256 pins match; predictor and transformer load (strict); {nets.source}"
    return "files present"


def run(args: argparse.Namespace) -> int:
    from ..models import ModelMissingError

    if args.action == "list":
        rows = _rows(args.models_dir)
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        for row in rows:
            mark = "yes" if row["present"] else "no "
            used = ",".join(row["used_by"])
            print(
                f"{row['name']:<13} {row['size_gb']:>6.2f} GB  present: {mark}  for {used:<14}"
                f" {row['repo']}  [{row['licence']}]"
            )
            print(f"{'':<13} {row['where']}")
        return 0
    if args.action == "download":
        from ..models.download import download

        for name in _names(args):
            r = download(name, args.models_dir)
            print(f"{name}: {r.where}: {r.root}")
        return 0
    failed = 0
    for name in _names(args):  # verify
        try:
            print(f"{name}: ok: {_verify(name, args.models_dir)}")
        except ModelMissingError as e:
            failed += 1
            print(f"{name}: MISSING: {e}")
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            failed += 1
            print(f"{name}: BROKEN: {type(e).__name__}: {e}")
    return 1 if failed else 0
