"""A learned style score: how close renders are to a painting in Magenta's style-vector space.

    from engine.metrics_style import style_score
    s = style_score(images, masks, style_image)          # float in [-1, 1]; 1 = the painting's own style

score = mean over views of cos(v(view) - m, v(style) - m), v the Magenta style predictor's 100-d vector
(`engine.models.magenta`) of the view cropped to its mask's bounding box (outside the mask: mid grey) and m
the mean style vector of a set of reference paintings. Centring on m removes what all paintings share, so an
unrelated painting scores near 0 or below instead of ~0.9 (raw style vectors of any two paintings have a
high cosine). m is `reference_mean()` by default: the mean over the nine public-domain paintings of
../shared/data/styles, computed by scripts/magenta_reference_mean.py and shipped as
engine/models/magenta/reference_mean.npy (100 floats); pass `reference` (images or a vector) to use others.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REFERENCE_FILE = Path(__file__).parent / "models" / "magenta" / "reference_mean.npy"


def reference_mean() -> torch.Tensor:
    """The shipped mean style vector of the reference paintings, [100]."""
    return torch.from_numpy(np.load(REFERENCE_FILE, allow_pickle=False).astype(np.float32))


def _masked_crop(img: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """img [3, H, W], mask [H, W] or [1, H, W] -> the mask's bounding box, grey outside the mask."""
    if mask is None:
        return img
    m = mask.reshape(img.shape[-2:]).to(img.dtype)
    ys, xs = torch.nonzero(m > 0.5, as_tuple=True)
    if len(ys) == 0:
        raise ValueError("style_score: a mask is empty")
    img = img * m + 0.5 * (1 - m)
    return img[:, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def style_vectors(nets, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
    """[B, 3, H, W] (+ masks [B, 1, H, W]) -> [B, D]: each view cropped to its mask, then the predictor."""
    out = []
    for i in range(images.shape[0]):
        crop = _masked_crop(images[i], None if masks is None else masks[i])
        out.append(nets.style_vector(crop[None]))
    return torch.cat(out)


def style_score(
    images: torch.Tensor,
    masks: torch.Tensor | None,
    style_image: torch.Tensor,
    reference: torch.Tensor | list[torch.Tensor] | None = None,
    nets=None,
) -> float:
    """Mean centred cosine between the views' style vectors and the painting's (see the module doc).

    images [B, 3, H, W] in [0, 1]; masks [B, 1, H, W] or None; style_image [3, H, W] or [1, 3, H, W];
    reference: None (the shipped mean), a [D] mean vector, or a list of [3, H, W] paintings."""
    if nets is None:
        from .models.magenta import load_magenta

        nets = load_magenta(images.device)
    with torch.no_grad():
        if reference is None:
            mean = reference_mean().to(images.device)
        elif isinstance(reference, torch.Tensor) and reference.dim() == 1:
            mean = reference.to(images.device)
        else:
            mean = torch.cat([nets.style_vector(r.reshape(1, *r.shape[-3:])) for r in reference]).mean(0)
        if mean.shape[-1] != nets.style_dim:
            raise ValueError(f"reference vector has {mean.shape[-1]} values, the nets {nets.style_dim}")
        target = nets.style_vector(style_image.reshape(1, *style_image.shape[-3:]))[0] - mean
        views = style_vectors(nets, images, masks) - mean
        return float(F.cosine_similarity(views, target[None], dim=1).mean())
