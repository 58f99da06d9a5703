"""CLIP / CSD similarity scores (engine.metrics.models) and the learned Magenta style score in final_metrics,
with tiny random-weight models written in the real file layouts and read through the real loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine import metrics
from engine.metrics.models import object_crop
from engine.models import available
from engine.testing.tiny_models import TINY_CLIP_B16_ARCH, write_tiny_models

CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return write_tiny_models(tmp_path_factory.mktemp("models"), ("csd", "clip-vit-b16"))


def _views(n=2, seed=0):
    """n random views 48x64 whose object is the rectangle rows 8..31, cols 16..47 (mask = 1 there)."""
    g = torch.Generator().manual_seed(seed)
    ims = [torch.rand(3, 48, 64, generator=g) for _ in range(n)]
    m = torch.zeros(48, 64)
    m[8:32, 16:48] = 1.0
    return ims, [m.clone() for _ in range(n)]


def test_object_crop_is_the_square_around_the_mask():
    img = torch.arange(3 * 64 * 64, dtype=torch.float32).reshape(3, 64, 64)
    m = torch.zeros(64, 64)
    m[10:20, 20:40] = 1  # box 10 x 20, centre (15, 30); side round(20 * 1.1) = 22
    assert torch.equal(object_crop(img, m), img[:, 4:26, 19:41])
    m = torch.zeros(64, 64)
    m[0:10, 54:64] = 1  # in the corner: the square leaves the image
    crop = object_crop(img, m)
    assert crop.shape == (3, 11, 11)
    # side 11, centre (5, 59): top round(-0.5) = 0, left round(53.5) = 54 (Python rounds half to even);
    # column 64 lies outside: the last column is repeated
    assert torch.equal(crop[:, :, :-1], img[:, 0:11, 54:64]) and torch.equal(crop[:, :, -1], img[:, 0:11, 63])
    assert torch.equal(object_crop(img, torch.zeros(64, 64)), img)  # no object: the whole (square) image


def test_missing_models_are_skipped_with_a_note(tmp_path):
    if available("clip-vit-b16", tmp_path) or available("csd", tmp_path):
        pytest.skip("the real CLIP/CSD models are on this machine (Hugging Face cache)")
    ims, masks = _views()
    scores, notes = metrics.model_scores(ims, ims, np.zeros((8, 8, 3), np.uint8), masks, tmp_path)
    assert scores == {}
    assert len(notes) == 2 and "splatbrush models download clip-vit-b16" in notes[0]
    assert "splatbrush models download csd" in notes[1]


def _reference_clip_embedding(model_file, image: torch.Tensor) -> torch.Tensor:
    """open_clip's CLIP built from the architecture dict and loaded with torch.load, CLIP preprocessing
    written here (the crop is already square: a plain bicubic resize to 224)."""
    from open_clip.model import CLIP

    model = CLIP(**TINY_CLIP_B16_ARCH).eval()
    model.load_state_dict(torch.load(model_file, map_location="cpu", weights_only=True))
    x = F.interpolate(image[None], size=(224, 224), mode="bicubic", align_corners=False)
    with torch.no_grad():
        return F.normalize(model.encode_image((x - CLIP_MEAN) / CLIP_STD), dim=-1)[0]


def test_clip_and_csd_scores_with_tiny_models(tiny_root):
    ims, masks = _views()
    styled = [i.flip(-1) for i in ims]
    style = (torch.rand(40, 40, 3, generator=torch.Generator().manual_seed(3)) * 255).to(torch.uint8).numpy()
    scores, notes = metrics.model_scores(styled, ims, style, masks, tiny_root)
    assert notes == []
    assert set(scores) == {
        f"{p}_{k}"
        for p in ("clip", "csd")
        for k in ("style_similarity_original", "style_similarity_stylized", "content_similarity")
    }
    # against the independent reference: rows 8..31, cols 16..47 -> square side round(32 * 1.1) = 35,
    # centre (20, 32): rows 2..36, cols 14..48
    f = tiny_root / "clip-vit-b16" / "open_clip_pytorch_model.bin"
    e0 = [_reference_clip_embedding(f, i[:, 2:37, 14:49]) for i in ims]
    e1 = [_reference_clip_embedding(f, i[:, 2:37, 14:49]) for i in styled]
    es = _reference_clip_embedding(f, torch.from_numpy(style).permute(2, 0, 1).float() / 255)
    assert scores["clip_content_similarity"] == pytest.approx(
        float(np.mean([float(a @ b) for a, b in zip(e0, e1, strict=True)])), abs=1e-5
    )
    assert scores["clip_style_similarity_stylized"] == pytest.approx(
        float(np.mean([float(a @ es) for a in e1])), abs=1e-5
    )
    assert scores["clip_style_similarity_original"] == pytest.approx(
        float(np.mean([float(a @ es) for a in e0])), abs=1e-5
    )
    # identities: a view against itself has content similarity 1; the style image is the view's own crop
    same, _ = metrics.model_scores(
        ims[:1],
        ims[:1],
        (ims[0][:, 2:37, 14:49].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy(),
        masks[:1],
        tiny_root,
    )
    for p in ("clip", "csd"):
        assert same[f"{p}_content_similarity"] == pytest.approx(1.0, abs=1e-5)
        assert same[f"{p}_style_similarity_original"] == pytest.approx(1.0, abs=5e-3)  # uint8 rounding
        assert abs(scores[f"{p}_content_similarity"]) < 1.0 - 1e-4  # flipped views are not the same


def test_final_metrics_includes_the_learned_and_model_scores(tiny_root):
    from engine.metrics_style import style_score
    from engine.models.magenta import tiny_magenta

    ims, masks = _views(3)
    styled = [(i * 0.5 + 0.25) for i in ims]
    style = (torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(5)) * 255).to(torch.uint8).numpy()
    nets = tiny_magenta()
    centre = torch.linspace(-0.1, 0.1, nets.style_dim)  # the tiny nets' style vectors are 8-d
    cfg = metrics.MetricsConfig(models_dir=str(tiny_root), style_nets=nets, style_reference=centre)
    m = metrics.final_metrics(ims, styled, masks, None, [None] * 3, style, cfg)
    ref = style_score(
        torch.stack(styled),
        torch.stack(masks)[:, None],
        torch.from_numpy(style).permute(2, 0, 1) / 255.0,
        reference=centre,
        nets=nets,
    )
    assert m["style_score_stylized"] == pytest.approx(ref, abs=1e-6)
    assert -1.0 <= m["style_score_original"] <= 1.0
    assert "clip_content_similarity" in m and "csd_style_similarity_stylized" in m
    assert m["notes"] == ["consistency errors skipped: no depths given"]
