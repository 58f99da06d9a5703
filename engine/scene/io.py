"""Scene files <-> `GaussianScene`: a thin torch layer over the pure-numpy `shared_protocol.splatfile`.

    scene = load_scene("in.spz")            # any format of shared_protocol.splatfile.registry (sniffed)
    save_scene(scene, "out.sog")            # the format the extension names (.ply, .spz, .sog, .glb, ...)

Errors are `SceneFormatError` naming the file: file-format problems (same message as the underlying
`SplatFileError`) and scenes that fail `GaussianScene` validation (NaN, all-zero quaternions, ...).
Tensors are float32 and share memory with the arrays read, so a read -> save round trip is bit-exact.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from shared_protocol.splatfile import SplatArrays, SplatFileError, read_splats, write_splats
from shared_protocol.splatfile import fuse_filter_3d as fuse_filter_3d_arrays

from .errors import SceneFormatError
from .gaussians import GaussianScene, SceneValidationError


def scene_from_arrays(arrays: SplatArrays, device: torch.device | str | None = None) -> GaussianScene:
    """`SplatArrays` -> `GaussianScene` (float32; on CPU the tensors share the arrays' memory)."""

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)

    return GaussianScene(
        means=tensor(arrays.means),
        quats=tensor(arrays.quats),
        log_scales=tensor(arrays.log_scales),
        opacity_logits=tensor(arrays.opacity_logits),
        sh=tensor(arrays.sh),
    )


def scene_to_arrays(scene: GaussianScene, extra: dict[str, np.ndarray] | None = None) -> SplatArrays:
    """`GaussianScene` -> `SplatArrays` (float32 numpy on CPU). `extra` (e.g. normals a file carried) is
    attached as is; it must have one value per Gaussian."""

    def array(t: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())

    arrays = SplatArrays(
        means=array(scene.means),
        quats=array(scene.quats),
        log_scales=array(scene.log_scales),
        opacity_logits=array(scene.opacity_logits),
        sh=array(scene.sh),
        extra=dict(extra or {}),
    )
    for name, a in arrays.extra.items():
        if a.shape != (scene.num_gaussians,):
            raise ValueError(
                f"extra property {name!r} has shape {a.shape}, expected ({scene.num_gaussians},): "
                "drop it when the scene's Gaussians changed"
            )
    return arrays


def load_scene_with_extra(
    path: str | os.PathLike, device: torch.device | str | None = None, fuse_filter_3d: bool = False
) -> tuple[GaussianScene, dict[str, np.ndarray]]:
    """Like `load_scene`, also returning the file's extra per-vertex properties (pass them to `save_scene`
    to keep e.g. nx ny nz or Mip-Splatting's filter_3D in the output). `fuse_filter_3d`: bake a
    Mip-Splatting `filter_3D` into scales/opacities (geometry then differs from the file's raw values)."""
    try:
        arrays = read_splats(path)
        if fuse_filter_3d and "filter_3D" in arrays.extra:
            arrays = fuse_filter_3d_arrays(arrays)
    except SplatFileError as e:
        raise SceneFormatError(e.path, e.problem) from None
    except OSError as e:
        raise SceneFormatError(path, f"cannot read: {e.strerror or e}") from None
    try:
        scene = scene_from_arrays(arrays, device=device)
    except SceneValidationError as e:
        raise SceneFormatError(path, f"not a valid scene: {e}") from None
    return scene, arrays.extra


def load_scene(
    path: str | os.PathLike, device: torch.device | str | None = None, fuse_filter_3d: bool = False
) -> GaussianScene:
    """Read a splat file: .ply (INRIA, gsplat, Mip-Splatting; binary, ASCII, big-endian), PlayCanvas
    .compressed.ply, .splat, Niantic .spz, PlayCanvas SOG (.sog or meta.json / its folder), glTF/GLB with
    KHR_gaussian_splatting. Every bad file gives one SceneFormatError naming the file and the problem."""
    return load_scene_with_extra(path, device=device, fuse_filter_3d=fuse_filter_3d)[0]


def save_scene(
    scene: GaussianScene, path: str | os.PathLike, extra: dict[str, np.ndarray] | None = None
) -> None:
    """Write a scene in the format its extension names (.ply, .compressed.ply, .splat, .spz, .sog, meta.json,
    .glb, .gltf; lossy formats quantise, see docs/formats.md). Atomic replace."""
    try:
        write_splats(scene_to_arrays(scene, extra), path)
    except SplatFileError as e:
        raise SceneFormatError(e.path, e.problem) from None
    except OSError as e:
        raise SceneFormatError(path, f"cannot write: {e.strerror or e}") from None
