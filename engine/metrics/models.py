"""Model-based scores: CLIP and CSD embedding similarities, computed only when the models are on disk.

    clip_style_similarity_{original,stylized}   cos(CLIP image embedding of the view, of the style image)
    clip_content_similarity                     cos(CLIP embedding of the stylized view, of the original view)
    csd_style_similarity_{original,stylized}    cos(CSD style embedding of the view, of the style image)
    csd_content_similarity                      cos(CSD content embedding, stylized view vs original view)

Means over views; each view is cropped to a square around its object mask (so the background does not
dominate) and goes through the model alone (memory bounded by one view). Models: `clip-vit-b16` (open_clip
ViT-B/16, OpenAI weights) and `csd` (CSD-ViT-L), found by `engine.models` (never downloaded); a missing model
is skipped with a note naming the download command.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

CROP_MARGIN = 0.05


def object_crop(image: Tensor, mask: Tensor | None, threshold: float = 0.5) -> Tensor:
    """[3, H, W] -> [3, s, s]: the square around the mask's bounding box (+5 % margin, edge pixels repeated
    where the square leaves the image); the whole image, padded to a square, without a mask or object."""
    _, h, w = image.shape
    ys, xs = (torch.nonzero(mask.reshape(h, w) > threshold, as_tuple=True)) if mask is not None else ([], [])
    if len(ys) == 0:
        y0, y1, x0, x1 = 0, h, 0, w
    else:
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    side = max(y1 - y0, x1 - x0)
    side = max(1, round(side * (1 + 2 * CROP_MARGIN))) if len(ys) else side
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    top, left = round(cy - side / 2), round(cx - side / 2)
    pad = (max(0, -left), max(0, left + side - w), max(0, -top), max(0, top + side - h))
    x = F.pad(image[None], pad, mode="replicate")[0] if any(pad) else image
    top, left = top + pad[2], left + pad[0]
    return x[:, top : top + side, left : left + side]


def _view(x: Tensor, dims: int) -> Tensor:
    while x.dim() > dims and x.shape[0] == 1:
        x = x[0]
    return x


def _embed_views(
    encode: Callable[[Tensor], Tensor], views: Sequence[Tensor], masks: Sequence[Tensor] | None, device
) -> Tensor:
    """[V, D] L2-normalised embeddings, one view at a time."""
    out = []
    for v, img in enumerate(views):
        m = _view(masks[v], 2) if masks is not None else None
        crop = object_crop(_view(img, 3).float().cpu(), None if m is None else m.cpu())
        with torch.no_grad():
            out.append(F.normalize(encode(crop[None].to(device)).float(), dim=-1).cpu())
    return torch.cat(out)


def _clip_encoder(models_dir, device) -> Callable[[Tensor], Tensor]:
    from ..guidance.model_common import clip_preprocess
    from ..guidance.quality import image_size, load_open_clip_from_registry

    model = load_open_clip_from_registry("clip-vit-b16", models_dir).to(device).eval()
    size = image_size(model)
    return lambda x: model.encode_image(clip_preprocess(x, size))


def _csd_encoders(models_dir, device) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    from ..guidance.csd import load_csd_from_registry
    from ..guidance.model_common import clip_preprocess

    model = load_csd_from_registry(models_dir).to(device).eval()
    size = model.backbone.image_size[0]
    return (lambda x: model(clip_preprocess(x, size))[1]), (lambda x: model(clip_preprocess(x, size))[2])


def _similarities(prefix: str, style_enc, content_enc, stylized, originals, style, masks, device) -> dict:
    s_img = _embed_views(style_enc, [style], None, device)[0]  # [D]
    e1 = _embed_views(style_enc, stylized, masks, device)
    e0 = _embed_views(style_enc, originals, masks, device)
    c1 = e1 if content_enc is style_enc else _embed_views(content_enc, stylized, masks, device)
    c0 = e0 if content_enc is style_enc else _embed_views(content_enc, originals, masks, device)
    return {
        f"{prefix}_style_similarity_original": float((e0 @ s_img).mean()),
        f"{prefix}_style_similarity_stylized": float((e1 @ s_img).mean()),
        f"{prefix}_content_similarity": float((c1 * c0).sum(-1).mean()),
    }


def model_scores(
    stylized_images: Sequence[Tensor],  # per view [3, H, W] (or [1, 3, H, W]) in [0, 1]
    original_images: Sequence[Tensor],
    style_image: np.ndarray,  # uint8 [H, W, 3]
    masks: Sequence[Tensor] | None = None,  # per view [H, W] object alpha
    models_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, float], list[str]]:
    """(CLIP and CSD scores of the models that are on disk, notes on the ones skipped); see the module doc."""
    from ..guidance.model_common import style_to_tensor
    from ..models import available

    if len(stylized_images) != len(original_images) or len(stylized_images) == 0:
        raise ValueError(
            f"model_scores needs as many stylized as original views (>0), got {len(stylized_images)} and "
            f"{len(original_images)}"
        )
    style = style_to_tensor(np.array(style_image))[0]  # a copy: loaded images are read-only
    scores: dict[str, float] = {}
    notes: list[str] = []
    for prefix, model in (("clip", "clip-vit-b16"), ("csd", "csd")):
        if not available(model, models_dir):
            notes.append(
                f"{prefix.upper()} scores skipped: model {model!r} is not on this machine "
                f"(`splatbrush models download {model}`)"
            )
            continue
        if prefix == "clip":
            enc = _clip_encoder(models_dir, device)
            encs = (enc, enc)
        else:
            encs = _csd_encoders(models_dir, device)
        scores.update(_similarities(prefix, *encs, stylized_images, original_images, style, masks, device))
    return scores, notes
