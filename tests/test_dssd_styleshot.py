"""StyleShot (patches, encoder, style attention, checkpoint key mapping) and DSSD, with tiny random models
that go through the real loading code (`write_tiny_models` writes them in the real file layouts)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")  # the `models` extra
pytest.importorskip("transformers")  # the `models` extra

from engine.guidance.base import GuidanceBatch, StepInfo
from engine.guidance.dssd import DSSDConfig, DSSDGuidance, dssd_guidance, dssd_timestep
from engine.guidance.styleshot import (
    StyleAttnProcessor,
    load_styleshot,
    map_ip_state_dict,
    style_image_tensor,
    style_patches,
)
from engine.models import ModelMissingError
from engine.testing.tiny_models import write_tiny_models


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return write_tiny_models(tmp_path_factory.mktemp("models"), ("sd15", "styleshot", "clip-vit-h14"))


@pytest.fixture(scope="module")
def style():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (300, 420, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def dssd(tiny_root, style):
    return DSSDGuidance(DSSDConfig(models_dir=str(tiny_root), resolution=64, rgb_steps=3), style, "cpu")


def _batch(b=2, size=40, step=3, alpha=0.3, mode="global"):
    images = torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(step)).requires_grad_(True)
    info = StepInfo(step=step, total_steps=100, phase="sds", mode=mode, alpha=alpha, view_ids=list(range(b)))
    return GuidanceBatch(images, images.detach().clone(), torch.ones(b, 1, size, size), info)


# ------------------------------------------------------------------------------------------- schedule maths
def test_timestep_schedule():
    assert dssd_timestep(0.0) == 750  # round(1000) clipped to 0.75 T
    assert dssd_timestep(1.0) == 20  # 0 clipped to 0.02 T
    assert dssd_timestep(0.25) == 500  # (1 - 0.5) * 1000
    assert dssd_timestep(0.64) == 200
    ts = [dssd_timestep(a / 100) for a in range(101)]
    assert all(a >= b for a, b in zip(ts, ts[1:], strict=False)) and min(ts) == 20 and max(ts) == 750
    with pytest.raises(ValueError):
        dssd_timestep(1.5)


def test_guidance_schedule():
    assert dssd_guidance(0.0) == 7.5 and dssd_guidance(1.0) == 20.0
    assert dssd_guidance(0.9) == pytest.approx(20 * 0.81)
    knee = math.sqrt(7.5 / 20)
    assert dssd_guidance(knee - 1e-3) == 7.5 and dssd_guidance(knee + 1e-3) > 7.5
    assert dssd_guidance(0.5, lambda_max=30.0) == 7.5


# ------------------------------------------------------------------------------------------- StyleShot pieces
def test_style_patches_follow_recursive_quadrants():
    img = torch.arange(3 * 512 * 512, dtype=torch.float32).view(1, 3, 512, 512)
    high, middle, low = style_patches(img, torch.Generator().manual_seed(0))
    assert high.shape == (8, 3, 128, 128) and middle.shape == (16, 3, 64, 64) and low.shape == (32, 3, 32, 32)

    def has(group, y, x, s):
        crop = img[0, :, y : y + s, x : x + s]
        return any(torch.equal(p, crop) for p in group)

    assert has(high, 0, 0, 128) and has(high, 128, 128, 128)  # diagonal quadrants of the top-left quarter
    assert not has(high, 128, 0, 128)  # the anti-diagonal ones are split further
    assert has(middle, 128, 0, 64) and has(middle, 192, 64, 64)
    assert has(low, 192, 0, 32) and has(low, 224, 32, 32)
    # patches never overlap: the three scales together cover 229376 distinct pixels
    flat = torch.cat([p.reshape(-1) for p in (high[:, 0], middle[:, 0], low[:, 0])])
    assert flat.unique().numel() == 8 * 128**2 + 16 * 64**2 + 32 * 32**2


def test_style_image_tensor_resizes_and_crops(style):
    x = style_image_tensor(style)
    assert x.shape == (1, 3, 512, 512) and x.min() >= -1 and x.max() <= 1
    with pytest.raises(ValueError, match="np.uint8"):
        style_image_tensor(style.astype(np.float32))


def test_style_attention_equals_text_plus_scaled_style_by_hand():
    from diffusers.models.attention_processor import Attention, IPAdapterAttnProcessor2_0

    torch.manual_seed(0)
    attn = Attention(query_dim=16, cross_attention_dim=24, heads=2, dim_head=8)
    proc = StyleAttnProcessor(hidden_size=16, cross_attention_dim=24, num_tokens=6, scale=0.7)
    attn.set_processor(proc)
    h = torch.randn(2, 10, 16)
    text, sty = torch.randn(2, 77, 24), torch.randn(2, 6, 24)
    out = attn(h, encoder_hidden_states=torch.cat([text, sty], 1))

    def by_hand(k_lin, v_lin, ctx):
        q = attn.to_q(h).view(2, 10, 2, 8).transpose(1, 2)
        k = k_lin(ctx).view(2, -1, 2, 8).transpose(1, 2)
        v = v_lin(ctx).view(2, -1, 2, 8).transpose(1, 2)
        w = (q @ k.transpose(-1, -2) / math.sqrt(8)).softmax(-1)
        return (w @ v).transpose(1, 2).reshape(2, 10, 16)

    mixed = by_hand(attn.to_k, attn.to_v, text) + 0.7 * by_hand(proc.to_k_ip, proc.to_v_ip, sty)
    expected = attn.to_out[0](mixed)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # and it agrees with diffusers' IPAdapterAttnProcessor2_0 given the same weights
    ref = IPAdapterAttnProcessor2_0(16, 24, num_tokens=(6,), scale=0.7)
    ref.to_k_ip[0].weight.data.copy_(proc.to_k_ip.weight)
    ref.to_v_ip[0].weight.data.copy_(proc.to_v_ip.weight)
    attn.set_processor(ref)
    torch.testing.assert_close(attn(h, encoder_hidden_states=(text, [sty])), out, atol=1e-5, rtol=1e-5)
    proc.scale = 0.0
    attn.set_processor(proc)
    torch.testing.assert_close(
        attn(h, encoder_hidden_states=torch.cat([text, sty], 1)),
        attn.to_out[0](by_hand(attn.to_k, attn.to_v, text)),
        atol=1e-5,
        rtol=1e-5,
    )


def test_key_mapping_on_styleshot_names():
    names = ["down.attn1.processor", "down.attn2.processor", "up.attn1.processor", "up.attn2.processor"]
    k1, v3, p = torch.randn(4, 3), torch.randn(5, 3), torch.randn(8, 2)
    sd = {
        "adapter_modules.1.to_k_ip.weight": k1,
        "adapter_modules.1.to_v_ip.weight": torch.randn(4, 3),
        "adapter_modules.3.to_k_ip.weight": torch.randn(5, 3),
        "adapter_modules.3.to_v_ip.weight": v3,
        "style_image_proj_modules.2.proj.weight": p,
        "controlnet.conv_in.weight": torch.zeros(1),
        "unet.whatever": torch.zeros(1),
    }
    proj, procs, controlnet = map_ip_state_dict(sd, names)
    assert proj["2.proj.weight"] is p and set(controlnet) == {"conv_in.weight"}
    assert procs["down.attn2.processor"]["to_k_ip.weight"] is k1
    assert procs["up.attn2.processor"]["to_v_ip.weight"] is v3
    with pytest.raises(ValueError, match="self-attention"):
        map_ip_state_dict({"adapter_modules.0.to_k_ip.weight": k1}, names)
    with pytest.raises(ValueError, match="index 9"):
        map_ip_state_dict({"adapter_modules.9.to_k_ip.weight": k1}, names)
    with pytest.raises(ValueError, match="unexpected key"):
        map_ip_state_dict({"image_proj.proj.weight": p}, names)


def test_load_styleshot_puts_each_checkpoint_tensor_in_its_layer(tiny_root):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_root / "sd15" / "unet")
    ss = tiny_root / "styleshot" / "pretrained_weight"
    adapter = load_styleshot(unet, ss / "ip.bin", ss / "style_aware_encoder.bin", tiny_root / "clip-vit-h14")
    ip = torch.load(ss / "ip.bin", weights_only=True)
    names = list(unet.attn_processors)
    n_cross = 0
    for i, name in enumerate(names):
        proc = unet.attn_processors[name]
        if name.endswith("attn2.processor"):
            n_cross += 1
            assert isinstance(proc, StyleAttnProcessor)
            assert torch.equal(proc.to_k_ip.weight, ip[f"adapter_modules.{i}.to_k_ip.weight"])
    assert (
        n_cross == len(adapter.processors) == 7
    )  # 2 down + 1 mid + 4 up (layers_per_block + 1 per up block)
    assert torch.equal(adapter.image_proj[1].norm.weight, ip["style_image_proj_modules.1.norm.weight"])
    # the tiny config.json keeps projection_dim (32) only at its top level: taken from the checkpoint
    assert adapter.encoder.projection_dim == 32
    enc = torch.load(ss / "style_aware_encoder.bin", weights_only=True)
    assert torch.equal(adapter.encoder.position_embedding.weight, enc["position_embedding.weight"])


# ------------------------------------------------------------------------------------------- DSSD
def test_dssd_style_tokens(dssd):
    assert dssd.style_tokens.shape == (1, 6, 24) and dssd.null_style_tokens.shape == (1, 6, 24)
    assert not torch.allclose(dssd.style_tokens, dssd.null_style_tokens)
    assert torch.isfinite(dssd.style_tokens).all()


def test_dssd_loss_is_finite_and_reaches_images(dssd):
    batch = _batch()
    terms = dssd(batch)
    assert set(terms) == {"dssd"} and terms["dssd"].ndim == 0 and torch.isfinite(terms["dssd"])
    terms["dssd"].backward()
    g = batch.images.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_dssd_loss_against_the_published_sds_formula(dssd, monkeypatch):
    """Independent reference: SD1.5's scaled-linear DDPM schedule computed by hand, a stub noise predictor
    with a known output, and the SDS gradient of DreamFusion (eq. 3): dL/dz = w(t) (ε̂ - ε) / B with
    w(t) = 1 - ᾱ_t, z_t = sqrt(ᾱ_t) z + sqrt(1 - ᾱ_t) ε."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    alphas_bar = np.cumprod(1.0 - betas)
    np.testing.assert_allclose(dssd.alphas_cumprod.numpy(), alphas_bar, rtol=1e-5)
    t_expected = round((1 - 0.5**0.5) * 1000)  # alpha = 0.5 -> t = 293, inside [20, 750]
    a = float(alphas_bar[t_expected])

    g = torch.Generator().manual_seed(11)
    z_leaf = torch.randn(2, 4, 8, 8, generator=g, requires_grad=True)
    calls = []

    def stub_predict(z_t, t, guidance):
        calls.append((z_t.clone(), t.clone(), guidance))
        return 0.25 * z_t + 0.1  # ε̂, known

    monkeypatch.setattr(dssd, "encode", lambda images: z_leaf * 1.0)
    monkeypatch.setattr(dssd, "predict_noise", stub_predict)
    loss = dssd(_batch(step=7, alpha=0.5, mode="global-fix"))["dssd"]
    loss.backward()

    ((z_t, t, guidance),) = calls
    assert t.tolist() == [t_expected, t_expected] and guidance == 7.5  # max(7.5, 20 * 0.5²)
    z = z_leaf.detach().double()
    noise = (z_t.double() - a**0.5 * z) / (1 - a) ** 0.5  # the ε the module drew
    assert torch.allclose(noise[0], noise[1], atol=1e-5)  # global-fix: one noise sample for all views
    assert 0.5 < float(noise.std()) < 1.5  # a standard normal draw, not zeros
    grad = (1 - a) * ((0.25 * z_t.double() + 0.1) - noise)
    assert loss.item() == pytest.approx(0.5 * float(grad.pow(2).sum()) / 2, rel=1e-4)
    torch.testing.assert_close(z_leaf.grad.double(), grad / 2, rtol=1e-4, atol=1e-6)

    calls.clear()
    dssd(_batch(step=7, alpha=0.5, mode="global"))
    free = (calls[0][0].double() - a**0.5 * z) / (1 - a) ** 0.5
    assert not torch.allclose(free[0], free[1], atol=1e-3)  # global: independent noise per view


def test_dssd_built_by_the_loop_interface(tiny_root, style):
    from engine.guidance import registry
    from engine.stylize.config import StylizeConfig

    job = StylizeConfig(seed=3, options={"dssd": {"models_dir": str(tiny_root), "resolution": 32}})
    g = registry.get("dssd").build(job, style, "cpu")
    assert g.cfg.resolution == 32 and g.name == "dssd" and g.seed == 7919 * 3
    with pytest.raises(ValueError, match="unknown dssd option"):
        StylizeConfig(options={"dssd": {"bogus": 1}})


def test_dssd_missing_models_raise(tmp_path, style, monkeypatch):
    monkeypatch.delenv("SPLATBRUSH_MODELS", raising=False)
    with pytest.raises(ModelMissingError, match="splatbrush models download"):
        DSSDGuidance(DSSDConfig(models_dir=str(tmp_path)), style, "cpu")


def test_rgb_targets(dssd):
    images = torch.rand(1, 3, 40, 40)
    out = dssd.make_rgb_targets(images)
    assert out.shape == images.shape and not out.requires_grad
    assert out.min() >= 0 and out.max() <= 1 and not torch.allclose(out, images)
