"""Model registry, lookup (models dir, HF cache, offline), ModelMissingError and `splatbrush models`."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("huggingface_hub")  # the `models` extra

from engine.cli import main
from engine.models import (
    REGISTRY,
    ModelMissingError,
    available,
    models_for,
    require,
    resolve,
)
from engine.models.download import DownloadError, download


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path, monkeypatch):
    """No real cache or models dir leaks in: empty HF cache, torch hub dir and no SPLATBRUSH_MODELS."""
    import huggingface_hub.constants as hfc
    import torch

    monkeypatch.delenv("SPLATBRUSH_MODELS", raising=False)
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    import huggingface_hub.file_download as fd

    if hasattr(fd, "HF_HUB_CACHE"):
        monkeypatch.setattr(fd, "HF_HUB_CACHE", str(tmp_path / "hf"))
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torchhub"))
    yield
    torch.hub.set_dir(old)


def _touch_model(root, name):
    for entry in REGISTRY[name].files:
        p = root / name / entry.split("|")[-1]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_guidance_and_model_registries_agree():
    """Every model a guidance names is in the model registry, every registry model is needed by some
    guidance, and a guidance is available exactly when each of its models' files is on disk."""
    from engine.guidance import registry as guidance_registry

    needed = {m for spec in guidance_registry.GUIDANCE.values() for m in spec.models}
    assert needed == set(REGISTRY)
    for name, s in REGISTRY.items():
        assert s.name == name and s.files
        assert guidance_registry.used_by(name)
    assert guidance_registry.used_by("magenta") == ("magenta",)


def test_missing_model_error_names_model_and_command(tmp_path):
    assert not available("csd")
    with pytest.raises(ModelMissingError) as e:
        resolve("csd", tmp_path)
    msg = str(e.value)
    assert "'csd'" in msg and "splatbrush models download csd" in msg and "pytorch_model.bin" in msg
    assert str(tmp_path / "csd") in msg
    with pytest.raises(ModelMissingError, match="splatbrush models download sd15"):
        require("dssd", tmp_path)


def test_models_dir_lookup_and_guidance_names(tmp_path, monkeypatch):
    from engine.guidance import registry as guidance_registry

    for name in guidance_registry.get("dssd").models:
        _touch_model(tmp_path, name)
    assert available("dssd", tmp_path) and available("sd15", tmp_path)
    assert not available("sos", tmp_path)
    monkeypatch.setenv("SPLATBRUSH_MODELS", str(tmp_path))
    assert available("dssd")  # the env variable is the default models dir
    r = resolve("styleshot")
    assert r.where == "models-dir" and r.root == tmp_path / "styleshot"
    assert r.path("pretrained_weight/ip.bin").is_file()
    assert models_for("quality") == ("clip-vit-b16",) and models_for("vgg19") == ("vgg19",)
    with pytest.raises(ValueError, match="unknown model"):
        available("nope")


def test_alternative_files(tmp_path):
    (tmp_path / "clip-vit-b16").mkdir()
    (tmp_path / "clip-vit-b16" / "open_clip_pytorch_model.bin").write_bytes(b"x")
    r = resolve("clip-vit-b16", tmp_path)
    assert (
        r.path("open_clip_model.safetensors|open_clip_pytorch_model.bin").name
        == "open_clip_pytorch_model.bin"
    )


def test_hf_cache_lookup(tmp_path):
    """A file in the HF cache layout (models--owner--name/snapshots/<rev>/..., refs/main) is found."""
    import huggingface_hub.constants as hfc

    repo = tmp_path / "hf" / "models--tomg-group-umd--CSD-ViT-L"
    rev = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True)
    (snap / "pytorch_model.bin").write_bytes(b"x")
    assert hfc.HF_HUB_CACHE == str(tmp_path / "hf")
    r = resolve("csd")
    assert r.where == "hf-cache" and r.root == snap


def test_torch_hub_lookup(tmp_path):
    import torch

    ck = tmp_path / "torchhub" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "vgg19-dcbb9e9d.pth").write_bytes(b"x")
    assert torch.hub.get_dir() == str(tmp_path / "torchhub")
    assert available("sos")


def test_download_offline_is_a_clear_error(tmp_path, monkeypatch):
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True)
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE"):
        download("csd", tmp_path)
    _touch_model(tmp_path, "csd")  # already present: no network needed even offline
    assert download("csd", tmp_path).where == "models-dir"


def test_cli_models_list_offline(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True)
    _touch_model(tmp_path, "vgg19")
    assert main(["models", "list", "--models-dir", str(tmp_path), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(REGISTRY)
    assert rows["vgg19"]["present"] and not rows["csd"]["present"]
    assert str(tmp_path / "vgg19") in rows["vgg19"]["where"]
    assert main(["models", "list"]) == 0
    assert "sd15" in capsys.readouterr().out


def test_cli_verify_reports_missing_and_broken(tmp_path, capsys):
    _touch_model(tmp_path, "vgg19")  # a 1-byte "checkpoint": present but broken
    assert main(["models", "verify", "vgg19", "csd", "--models-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "vgg19: BROKEN" in out and "csd: MISSING" in out
    assert main(["models", "download", "nope"]) == 2  # unknown name: ValueError -> exit code 2
