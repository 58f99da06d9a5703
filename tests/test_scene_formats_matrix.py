"""Conversion matrix: one scene written in every readable format, each read back and converted to every
writable format, read again: counts equal, SH degree kept (0 for .splat), each value within the target
format's documented error (docs/formats.md), bit-exact into the lossless ones. Plus the real samples:
right count, inside their bounding box, a non-empty render inside the frame."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from shared_protocol.splatfile import SPLAT_FORMATS, SplatArrays, detect_format, read_splats, write_splats
from shared_protocol.splatfile.common import sigmoid
from tests.test_scene_formats_quant import SH_C0, in_range_arrays, rotation_angle

pytest.importorskip("PIL")
pytest.importorskip("zstandard")

# target name -> (output file name, writer options)
TARGETS = {
    "ply": ("t.ply", {}),
    "compressed_ply": ("t.compressed.ply", {"morton": False}),  # keep the order to compare one by one
    "spz2": ("t.spz", {"version": 2}),
    "spz3": ("t.spz", {"version": 3}),
    "spz4": ("t.spz", {"version": 4}),
    "sog": ("t.sog", {}),
    "sog_folder": ("sogdir/meta.json", {}),
    "glb": ("t.glb", {}),
    "gltf": ("t.gltf", {}),
    "splat": ("t.splat", {}),
}
SOURCES = TARGETS  # every format we write we also read
EXACT = {"ply", "glb", "gltf"}
SMALL_ANGLE = 4 * np.sqrt(3) / 2  # angle <= 4 sqrt(3) x half the per-component step
ANGLE = {  # radians
    "compressed_ply": SMALL_ANGLE * np.sqrt(2) / 1023,
    "spz3": SMALL_ANGLE * np.sqrt(0.5) / 511,
    "spz4": SMALL_ANGLE * np.sqrt(0.5) / 511,
    "sog": SMALL_ANGLE * np.sqrt(2) / 255,
    "sog_folder": SMALL_ANGLE * np.sqrt(2) / 255,
    "splat": 2 * 2 * np.sqrt(4) * 0.5 / 128,  # 8 bits a component over [-1, 1]
}


def matrix_scene() -> SplatArrays:
    a = in_range_arrays(n=600, deg=3, seed=7, extent=2.0)
    a.sh[:, 0] *= 0.55  # colours inside [0, 1] so that .splat does not clip them
    return a


def write_read(arrays: SplatArrays, folder: Path, target: str) -> SplatArrays:
    name, options = TARGETS[target]
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write_splats(arrays, path, **options)
    back = read_splats(path)
    assert detect_format(path.parent if target == "sog_folder" else path) == format_name(target)
    if target.startswith("sog"):
        back.meta["codebooks"] = sog_codebooks(path)
    return back


def format_name(target: str) -> str:
    return {"spz2": "spz", "spz3": "spz", "spz4": "spz", "sog_folder": "sog", "glb": "gltf"}.get(
        target, target
    )


def sog_codebooks(path: Path) -> dict[str, np.ndarray]:
    if path.name == "meta.json":
        meta = json.loads(path.read_bytes())
    else:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("meta.json"))
    return {key: np.array(meta[key]["codebook"]) for key in ("scales", "sh0", "shN") if key in meta}


def assert_nearest_entry(orig: np.ndarray, back: np.ndarray, book: np.ndarray) -> None:
    """The SOG quantum: each value decodes to the codebook entry nearest it."""
    nearest = np.abs(orig.astype(np.float64)[..., None] - book).min(axis=-1)
    np.testing.assert_allclose(np.abs(orig - back), nearest, atol=1e-6)


def assert_within(target: str, a: SplatArrays, b: SplatArrays) -> None:
    """b (a written as `target` and read back) is within the target's documented error of a."""
    assert b.num_gaussians == a.num_gaussians
    assert b.sh_degree == (0 if target == "splat" else a.sh_degree)
    if target in EXACT:
        for f in ("means", "quats", "log_scales", "opacity_logits", "sh"):
            assert getattr(a, f).tobytes() == getattr(b, f).tobytes(), (target, f)
        return
    m = np.abs(a.means).max(axis=0).astype(np.float64)
    extent = (a.means.max(axis=0) - a.means.min(axis=0)).astype(np.float64)
    pos = {
        "compressed_ply": extent / np.array([2047, 1023, 2047]) / 2 * 1.0001,
        "spz": np.full(3, 2.0**-13),
        "sog": (1 + m) * np.expm1(2 * np.log1p(m) / 65535 / 2 * 1.0001),
        "splat": np.zeros(3),
        "gltf": np.zeros(3),
    }[format_name(target)]
    pos_err = np.abs(a.means.astype(np.float64) - b.means)
    assert (pos_err <= pos + 4 * 2.0**-24 * np.abs(a.means)).all(), (target, pos_err.max(axis=0), pos)

    angle = rotation_angle(a.quats, b.quats)
    if target == "spz2":  # w derived from x, y, z: only the stored components are bounded
        assert np.median(angle) < 0.02, target
    else:
        assert angle.max() <= ANGLE[target] + 1e-6, (target, angle.max(), ANGLE[target])

    opacity = np.abs(sigmoid(a.opacity_logits) - sigmoid(b.opacity_logits))
    assert opacity.max() <= 1 / 510 + 1e-6, (target, opacity.max())
    colour = SH_C0 * np.abs(a.sh[:, 0] - b.sh[:, 0]).max()  # displayed colour 0.5 + SH_C0 * f_dc
    s_range = float(a.log_scales.max() - a.log_scales.min())
    scale_err = float(np.abs(a.log_scales - b.log_scales).max())
    if target == "compressed_ply":
        c_range = SH_C0 * float(a.sh[:, 0].max() - a.sh[:, 0].min())
        assert colour <= c_range / 510 * 1.0001 + 1e-6 and scale_err <= s_range / 1023 / 2 * 1.0001 + 1e-6
    elif target.startswith("spz"):
        assert colour <= 0.94 / 255 and scale_err <= 1 / 32 + 1e-6, (target, colour, scale_err)
    elif target.startswith("sog"):  # 256-entry codebooks: the nearest entry
        books = b.meta["codebooks"]
        assert_nearest_entry(a.log_scales, b.log_scales, books["scales"])
        assert_nearest_entry(a.sh[:, 0], b.sh[:, 0], books["sh0"])
        assert colour <= 2 / 255, (target, colour)
    else:  # .splat: colour 8 bits, linear float32 scales
        assert colour <= 1 / 510 + 1e-6 and scale_err <= 1e-6, (target, colour, scale_err)
    if target != "splat" and a.sh_degree:
        rest = float(np.abs(a.sh[:, 1:] - b.sh[:, 1:]).max())
        if target.startswith("sog"):  # 600 rows: each its own palette entry, then the shN codebook
            assert_nearest_entry(a.sh[:, 1:], b.sh[:, 1:], b.meta["codebooks"]["shN"])
        else:
            bound = {"compressed_ply": 8 / 512, "spz": 8.5 / 128}[format_name(target)]
            assert rest <= bound + 1e-6, (target, rest, bound)


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_conversion_matrix(tmp_path: Path, source: str) -> None:
    """source file -> read -> every target -> read: within the target's error of what the source held."""
    scene = matrix_scene()
    a = write_read(scene, tmp_path / "src", source)
    for target in TARGETS:
        b = write_read(a, tmp_path / target, target)
        assert_within(target, a, b)


def test_matrix_covers_the_registry() -> None:
    names = {format_name(t) for t in TARGETS}
    assert names == {name for name, fmt in SPLAT_FORMATS.items() if fmt.writer and fmt.reader}


def test_compressed_ply_morton_order_is_a_permutation(tmp_path: Path) -> None:
    a = matrix_scene()
    write_splats(a, tmp_path / "m.compressed.ply")  # default: z-curve order
    b = read_splats(tmp_path / "m.compressed.ply")
    dist = np.linalg.norm(b.means[:, None, :].astype(np.float64) - a.means[None], axis=-1)  # [600, 600]
    nearest = dist.argmin(axis=1)
    assert len(np.unique(nearest)) == a.num_gaussians  # every original once
    extent = (a.means.max(axis=0) - a.means.min(axis=0)).astype(np.float64)
    assert dist.min(axis=1).max() <= np.linalg.norm(extent / [2047, 1023, 2047] / 2) * 1.001
    opacity = np.abs(sigmoid(a.opacity_logits[nearest]) - sigmoid(b.opacity_logits))
    assert opacity.max() <= 1 / 510 + 1e-6


# ---------------------------------------------------------------------------------------------- real samples
REAL = {  # name -> (count, SH degree, format, bbox lo, bbox hi) from ../shared/data/README.md
    "fourth_st.spz": (131_199, 3, "spz", (-0.17, -0.17, -0.17), (0.17, 0.17, 0.17)),
    "st_peter.sog": (133_618, 0, "sog", (-1.0, -2.3, -1.0), (1.0, 2.5, 1.0)),
    "playbot_sog": (500_000, 2, "sog", (-1.05, -1.09, -1.05), (1.05, 0.06, 1.05)),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_samples_read_and_render(shared_data: Path, name: str) -> None:
    from engine.cameras.orbit import orbit_cameras
    from engine.render import render
    from engine.scene import load_scene

    n, deg, fmt, lo, hi = REAL[name]
    path = shared_data / "scenes" / name
    assert detect_format(path) == fmt
    scene = load_scene(path)
    assert scene.num_gaussians == n and scene.sh_degree == deg
    means = scene.means.numpy()
    assert (means >= np.array(lo)).all() and (means <= np.array(hi)).all()
    assert means.std(axis=0).min() > 0.01 * (np.array(hi) - np.array(lo)).max()  # not collapsed
    part = scene.subset(torch.arange(0, n, 8))  # every 8th Gaussian: a CPU render in about a second
    camera = orbit_cameras(part, 1, 32, 24, margin=1.3)[0]
    out = render(part, camera, background=(0.0, 0.0, 0.0))
    alpha = out.alpha.detach().numpy()
    image = out.image.detach().numpy()
    assert np.isfinite(image).all() and image.max() > 0.05
    assert (alpha > 0.5).mean() > 0.05  # non-empty
    border = np.concatenate([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
    assert border.mean() < 0.5 * alpha.mean() + 0.05  # the scene sits inside the frame
