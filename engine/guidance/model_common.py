"""Small helpers shared by the model-based guidance modules (dssd, sos, csd, quality, purify)."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Guidance

C = TypeVar("C")

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def module_config(config: Any, cls: type[C], name: str) -> C:
    """The module's own options from what the caller passed: an instance of `cls`, a dict of its fields, None
    (defaults), or the stylization job config (its `options[name]`)."""
    if isinstance(config, cls):
        return config
    if config is None:
        return cls()
    if isinstance(config, dict):
        options = config
    else:
        options = (getattr(config, "options", None) or {}).get(name, {})
        if isinstance(options, cls):
            return options
        options = dict(options)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown {name} option(s) {unknown}; valid options are {sorted(known)}")
    return cls(**options)


def job_seed(config: Any) -> int:
    """The job seed of a stylization config (0 when the caller passed the module's own options)."""
    return int(getattr(config, "seed", 0) or 0) if hasattr(config, "options") else 0


class ModelGuidance(Guidance):
    """Base of the guidance modules that load weights: one constructor, one set of checks.

        module = SubClass(config, style_image, device, models=None)

    `config` is the job's StylizeConfig (its `options[name]` is used), the module's options dataclass, a dict
    of its fields, or None. `models` injects already-loaded networks (tests, sharing between modules);
    None loads them from the model registry in `setup`. Subclasses set `name`, `options_cls` and
    `needs_style`, and implement `setup(style_image, models)` and `__call__`.
    """

    options_cls: type = object
    needs_style: bool = True

    def __init__(
        self,
        config: Any = None,
        style_image: np.ndarray | None = None,
        device: torch.device | str = "cpu",
        models: Any = None,
    ):
        self.cfg = module_config(config, self.options_cls, self.name)
        if self.needs_style and style_image is None:
            raise ValueError(f"{self.name} needs a style image (np.uint8 [H, W, 3])")
        self.device = torch.device(device)
        self.job_seed = job_seed(config)
        self.setup(style_image, models)

    def setup(self, style_image: np.ndarray | None, models: Any) -> None:  # pragma: no cover - interface
        raise NotImplementedError


def style_to_tensor(style_image: np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    """np.uint8 [H, W, 3] -> [1, 3, H, W] float in [0, 1]."""
    if not isinstance(style_image, np.ndarray) or style_image.ndim != 3 or style_image.shape[2] != 3:
        raise ValueError(
            f"style_image must be a numpy array [H, W, 3], got {getattr(style_image, 'shape', None)}"
        )
    x = torch.from_numpy(np.ascontiguousarray(style_image)).to(device)
    x = x.float() / 255.0 if style_image.dtype == np.uint8 else x.float()
    return x.permute(2, 0, 1)[None].clamp(0, 1)


def clip_preprocess(x: Tensor, size: int = 224) -> Tensor:
    """[B, 3, H, W] in [0, 1] -> CLIP input: bicubic resize of the short side to `size`, centre crop, CLIP
    mean/std. Differentiable."""
    h, w = x.shape[-2:]
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=nh < h)
    top, left = (nh - size) // 2, (nw - size) // 2
    x = x[..., top : top + size, left : left + size]
    mean = x.new_tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def half_on_cuda(device: torch.device, allow: bool = True) -> torch.dtype:
    """fp16 on CUDA (when allowed), fp32 elsewhere."""
    return torch.float16 if (allow and torch.device(device).type == "cuda") else torch.float32


def load_state(path, key: str | None = None) -> dict[str, Tensor]:
    """A state dict from a .safetensors or torch file; `key` picks a nested dict (e.g. 'model_state_dict')."""
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        sd = load_file(path)
    else:
        import pickle

        try:
            sd = _torch_load_allowing_numpy(path)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
            raise ValueError(
                f"{path} is not a readable torch checkpoint ({e}); delete it and download again"
            ) from e
    if key is not None and isinstance(sd, dict) and key in sd:
        sd = sd[key]
    if not isinstance(sd, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return sd


def _numpy_safe_globals() -> list:
    """numpy scalar/dtype pickling globals (checkpoints such as CSD's carry numpy scalars next to tensors),
    under numpy 2's and numpy 1's module names: data only, safe to allow in a weights-only load."""
    scalar = np._core.multiarray.scalar
    dtypes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return [scalar, np.dtype, *dtypes, (scalar, "numpy.core.multiarray.scalar")]


def _torch_load_allowing_numpy(path: str):
    """torch.load(weights_only=True); numpy scalars and dtypes are allowed, nothing else is unpickled."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "numpy" not in str(e):
            raise
    with torch.serialization.safe_globals(_numpy_safe_globals()):
        return torch.load(path, map_location="cpu", weights_only=True)
