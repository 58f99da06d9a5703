"""SOS, CSD, CLIP-IQA quality and style purification with tiny random models through the real loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("open_clip")  # the `models` extra

from engine.guidance import csd, purify, quality, sos
from engine.guidance.base import GuidanceBatch, StepInfo
from engine.guidance.model_common import load_state, style_to_tensor
from engine.models import ModelMissingError, available
from engine.testing.tiny_models import TINY_CSD_ARCH, write_tiny_models


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return write_tiny_models(tmp_path_factory.mktemp("models"), ("vgg19", "csd", "clip-vit-b16"))


@pytest.fixture(scope="module")
def style():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (12, 16, 3)).astype(np.uint8)
    return np.kron(base, np.ones((4, 4, 1), dtype=np.uint8))  # 48 x 64 blocky "painting"


def _batch(images, originals=None, step=50, total=100):
    images = images.clone().requires_grad_(True)
    originals = images.detach().clone() if originals is None else originals
    b, _, h, w = images.shape
    info = StepInfo(
        step=step, total_steps=total, phase="sds", mode="global", alpha=0.5, view_ids=list(range(b))
    )
    return GuidanceBatch(images, originals, torch.ones(b, 1, h, w), info)


def _job(tiny_root, name, **options):
    from engine.stylize.config import StylizeConfig

    return StylizeConfig(options={name: {"models_dir": str(tiny_root), **options}})


def test_tiny_models_are_available(tiny_root, monkeypatch):
    monkeypatch.delenv("SPLATBRUSH_MODELS", raising=False)
    assert all(available(n, tiny_root) for n in ("sos", "csd", "quality", "purify"))
    assert not available("dssd", tiny_root)


# ------------------------------------------------------------------------------------------- SOS
def test_sos_scales_halve_and_pretraining_uses_one_scale():
    assert sos.sos_scales(1024, 2048, step=50, pretrain_steps=10) == [1.0, 0.5]
    assert sos.sos_scales(2048, 4096, step=50, pretrain_steps=10) == [1.0, 0.5, 0.25]
    assert sos.sos_scales(511, 800, step=50, pretrain_steps=10) == [1.0]
    assert sos.sos_scales(2048, 2048, step=3, pretrain_steps=10) == [0.5]
    assert sos.sos_scales(64, 64, step=0, pretrain_steps=0, min_short_side=16) == [1.0, 0.5, 0.25]


def test_sos_module_runs_each_scale(tiny_root, style, monkeypatch):
    g = sos.SOSGuidance(_job(tiny_root, "sos", min_short_side=16, pretrain_steps=20), style, "cpu")
    calls = []
    real = g.features
    monkeypatch.setattr(
        g,
        "features",
        lambda x, names: (x.shape[0] == 2 and calls.append(tuple(x.shape[-2:]))) or real(x, names),
    )  # only the renders' passes (batch of 2), not the style image's
    images = torch.rand(2, 3, 64, 64)
    g(_batch(images, step=5))  # pretraining: one scale, 0.5
    assert sorted(set(calls)) == [(32, 32)]
    calls.clear()
    terms = g(_batch(images, step=25))
    assert sorted(set(calls), reverse=True) == [(64, 64), (32, 32), (16, 16)]
    assert set(terms) == {"sos_style", "sos_content"}


def test_sos_zero_on_the_style_itself_and_gradients(tiny_root, style):
    g = sos.SOSGuidance(sos.SOSConfig(models_dir=str(tiny_root), pretrain_steps=0), style, "cpu")
    same = style_to_tensor(style)  # [1, 3, 48, 64]: the style image as the render, one scale
    terms = g(_batch(same))
    assert terms["sos_style"].item() < 1e-6 and terms["sos_content"].item() == 0.0
    batch = _batch(torch.rand(2, 3, 48, 64), originals=torch.rand(2, 3, 48, 64))
    terms = g(batch)
    assert all(t.ndim == 0 and torch.isfinite(t) for t in terms.values())
    assert terms["sos_style"] > 1e-3 and terms["sos_content"] > 0
    sum(terms.values()).backward()
    assert batch.images.grad.abs().sum() > 0


def test_vgg_loader_and_caffe_normalisation(tiny_root, style):
    feats = sos.load_vgg19_features(tiny_root / "vgg19" / "vgg19-dcbb9e9d.pth")
    assert feats[0].out_channels == 64 // 16 and len(feats) == sos.LAYER_INDEX["r51"] + 1
    g = sos.SOSGuidance(sos.SOSConfig(normalization="caffe"), style, "cpu", models=feats)
    x = torch.zeros(1, 3, 1, 1)
    x[0, 0] = 1.0  # pure red
    y = g.normalize(x)[0, :, 0, 0]
    torch.testing.assert_close(y, torch.tensor([-103.939, -116.779, 255.0 - 123.68]))
    with pytest.raises(ValueError, match="normalization"):
        sos.SOSGuidance(sos.SOSConfig(normalization="bgr"), style, "cpu", models=feats)


# ------------------------------------------------------------------------------------------- CSD
def test_csd_checkpoint_layout_and_loss(tiny_root, style):
    raw = load_state(tiny_root / "csd" / "pytorch_model.bin")["model_state_dict"]
    assert "module.backbone.conv1.weight" in raw and "module.last_layer_style" in raw
    assert "module.backbone.transformer.resblocks.0.attn.in_proj_weight" in raw
    g = csd.CSDGuidance(_job(tiny_root, "csd"), style, "cpu")
    same = g(_batch(style_to_tensor(style)))["csd"]
    assert abs(same.item()) < 1e-5  # the style image against itself
    batch = _batch(torch.rand(2, 3, 40, 56))
    loss = g(batch)["csd"]
    assert torch.isfinite(loss) and 0 < loss.item() <= 2
    loss.backward()
    assert batch.images.grad.abs().sum() > 0


def test_csd_missing_model(tmp_path, style, monkeypatch):
    monkeypatch.delenv("SPLATBRUSH_MODELS", raising=False)
    with pytest.raises(ModelMissingError, match="models download csd"):
        csd.CSDGuidance(csd.CSDConfig(models_dir=str(tmp_path)), style, "cpu")


# ------------------------------------------------------------------------------------------- quality
def test_quality_is_clip_iqa_formula(tiny_root, style):
    # random tiny CLIP features are far apart: a lower temperature keeps the softmax off saturation
    g = quality.QualityGuidance(_job(tiny_root, "quality", logit_scale=5.0), style, "cpu")
    batch = _batch(torch.rand(3, 3, 48, 48))
    loss = g(batch)["quality"]
    s = g.scores(batch.images.detach())
    assert s.shape == (3, 3) and ((s > 0) & (s < 1)).all()
    expected = (1 - (0.4 * s[:, 0] + 0.4 * s[:, 1] + 0.2 * s[:, 2])).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert batch.images.grad.abs().sum() > 0
    g.cfg.logit_scale = 0.0  # no temperature: every pair is a coin flip
    assert g(_batch(torch.rand(1, 3, 48, 48)))["quality"].item() == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------- purify
def test_purification_removes_the_content_direction(tiny_root, style):
    model = quality.load_open_clip_from_registry("clip-vit-b16", str(tiny_root))
    x = style_to_tensor(style)
    plain = purify.purified_style_embedding(model, x, content_words="")
    words = "a red house"
    purified = purify.purified_style_embedding(model, x, content_words=words)
    text = quality.encode_text(model, [words], torch.device("cpu"))
    assert plain.norm().item() == pytest.approx(1.0) and purified.norm().item() == pytest.approx(1.0)
    assert (purified @ text.T).item() < (plain @ text.T).item()
    g = purify.PurifiedStyleGuidance(_job(tiny_root, "purify", content_words=words), style, "cpu")
    torch.testing.assert_close(g.target, purified)
    batch = _batch(torch.rand(2, 3, 40, 40))
    loss = g(batch)["purify"]
    loss.backward()
    assert torch.isfinite(loss) and batch.images.grad.abs().sum() > 0


def test_csd_loader_strips_prefix_and_checks_keys(tiny_root, tmp_path):
    raw = load_state(tiny_root / "csd" / "pytorch_model.bin")
    sd = dict(raw["model_state_dict"])
    sd["module.some_other_head.weight"] = torch.zeros(2)  # extra keys of other variants are ignored
    torch.save({"model_state_dict": sd}, tmp_path / "extra.bin")
    model = csd.load_csd(tmp_path / "extra.bin", dict(TINY_CSD_ARCH))
    torch.testing.assert_close(model.last_layer_style, sd["module.last_layer_style"])
    del sd["module.last_layer_style"]
    torch.save({"model_state_dict": sd}, tmp_path / "missing.bin")
    with pytest.raises(ValueError, match="lacks 1 CSD weights"):
        csd.load_csd(tmp_path / "missing.bin", dict(TINY_CSD_ARCH))


def test_the_stylization_loop_finds_and_builds_the_modules(tiny_root, style, monkeypatch):
    """The loop asks the guidance registry whether a module's models are on disk (env SPLATBRUSH_MODELS or
    the caches) and builds it from its registry entry with the job config's options."""
    from engine.guidance import registry
    from engine.stylize.config import StylizeConfig
    from engine.stylize.parts import build_guidance

    monkeypatch.delenv("SPLATBRUSH_MODELS", raising=False)
    assert not registry.get("sos").available()
    monkeypatch.setenv("SPLATBRUSH_MODELS", str(tiny_root))
    config = StylizeConfig(options={"sos": {"min_short_side": 16}, "quality": {"logit_scale": 5.0}})
    batch = _batch(torch.rand(1, 3, 48, 48))
    for name in ("sos", "csd", "quality", "purify"):
        assert registry.get(name).available()
        module = build_guidance(name, config, style, torch.device("cpu"))
        assert module.name == name
        terms = module(batch)
        assert terms and all(t.ndim == 0 and torch.isfinite(t) for t in terms.values())
    assert build_guidance("sos", config, style, torch.device("cpu")).cfg.min_short_side == 16


def test_vgg_layout_matches_torchvision():
    """Our VGG19 feature stack has torchvision's module indices and shapes, so its checkpoint loads as is."""
    tv = pytest.importorskip("torchvision")
    ref = tv.models.vgg19(weights=None).features[: sos.LAYER_INDEX["r51"] + 1].state_dict()
    ours = sos.vgg19_features().state_dict()
    assert list(ours) == list(ref)
    assert all(ours[k].shape == ref[k].shape for k in ref)
