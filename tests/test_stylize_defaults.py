"""What a job gets when the user names no device or preset."""

from __future__ import annotations

import pytest
import torch

from engine.stylize import StylizeConfig, default_preset, parts, resolve_device


def test_auto_device_follows_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cpu") == "cpu"
    assert StylizeConfig.from_preset("fast").device == "auto"


def test_full_method_by_default_only_on_a_gpu_with_every_model(monkeypatch):
    have = {"dssd": True, "sos": True, "csd": True, "quality": True}
    monkeypatch.setattr(parts, "model_available", lambda name: have[name])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_preset() == "paper"
    assert default_preset("cpu") == "fast"
    have["csd"] = False
    assert default_preset() == "fast"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    have["csd"] = True
    assert default_preset() == "fast"


def test_no_models_here_means_the_weight_free_default():
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine may have the models")
    assert default_preset() == "fast"
