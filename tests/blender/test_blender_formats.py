"""The installed extension imports the web formats in real Blender: Niantic .spz, PlayCanvas SOG (bundled .sog
and an unbundled folder's meta.json) and glTF .glb with KHR_gaussian_splatting, through the same registry as
the engine (the add-on's vendored shared_protocol.splatfile). SOG's images are WebP, decoded with Pillow:
where Blender's Python has no Pillow the import must fail with one clear report naming the package."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")


def has_pil() -> bool:
    """Pillow importable now (the extension's bundled wheel is on sys.path once it is installed)."""
    importlib.invalidate_caches()
    return importlib.util.find_spec("PIL") is not None


def splatfile(module):
    return sys.modules[module + ".vendor.shared_protocol.splatfile"]


def import_file(path) -> object:
    import bpy

    assert bpy.ops.splatbrush.import_gaussians(filepath=str(path)) == {"FINISHED"}
    return bpy.context.active_object


def exported(addon, tmp_path):
    import bpy

    out = tmp_path / "export.ply"
    assert bpy.ops.splatbrush.export_gaussians(filepath=str(out)) == {"FINISHED"}
    return splatfile(addon).read_splats(out)


def test_import_real_spz(addon, fresh_scene, shared_data, tmp_path):
    src = shared_data / "scenes" / "fourth_st.spz"
    obj = import_file(src)
    original = splatfile(addon).read_splats(src)
    assert original.num_gaussians == 131_199 and original.sh_degree == 3
    assert len(obj.data.vertices) == original.num_gaussians
    back = exported(addon, tmp_path)
    for field in FIELDS:
        assert getattr(back, field).tobytes() == getattr(original, field).tobytes(), field


@pytest.mark.parametrize("version", [2, 3, 4])
def test_import_spz_versions_written_by_the_addon_package(addon, fresh_scene, tmp_path, version):
    sf = splatfile(addon)
    if version == 4 and importlib.util.find_spec("zstandard") is None:
        with pytest.raises(sf.SplatFileError, match="zstandard"):  # one clear error, not an ImportError
            sf.write_splats(small_arrays(sf), tmp_path / "v4.spz", version=4)
        return
    path = tmp_path / f"v{version}.spz"
    sf.write_splats(small_arrays(sf), path, version=version)
    expected = sf.read_splats(path)
    obj = import_file(path)
    assert len(obj.data.vertices) == expected.num_gaussians
    back = exported(addon, tmp_path)
    for field in FIELDS:
        assert getattr(back, field).tobytes() == getattr(expected, field).tobytes(), field


def small_arrays(sf, n: int = 300, deg: int = 2):
    rng = np.random.default_rng(5)
    return sf.SplatArrays(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        log_scales=rng.normal(-3, 0.5, size=(n, 3)).astype(np.float32),
        opacity_logits=rng.normal(size=n).astype(np.float32),
        sh=(rng.normal(size=(n, (deg + 1) ** 2, 3)) * 0.3).astype(np.float32),
    )


def test_import_glb_bit_exact(addon, fresh_scene, tmp_path):
    sf = splatfile(addon)
    arrays = small_arrays(sf, deg=3)
    path = tmp_path / "s.glb"
    sf.write_splats(arrays, path)
    obj = import_file(path)
    assert len(obj.data.vertices) == arrays.num_gaussians
    back = exported(addon, tmp_path)
    for field in FIELDS:
        assert getattr(back, field).tobytes() == getattr(arrays, field).tobytes(), field


@pytest.mark.parametrize("name", ["st_peter.sog", "playbot_sog/meta.json"])
def test_import_real_sog(addon, fresh_scene, shared_data, tmp_path, name):
    import bpy

    src = shared_data / "scenes" / name
    if not has_pil():
        with pytest.raises(RuntimeError, match="pillow"):  # the ERROR report names what to install
            bpy.ops.splatbrush.import_gaussians(filepath=str(src))
        assert not bpy.data.objects
        pytest.skip("Blender's Python has no Pillow: SOG import reports it (checked); values not compared")
    obj = import_file(src)
    original = splatfile(addon).read_splats(src)
    assert len(obj.data.vertices) == original.num_gaussians == (133_618 if "peter" in name else 500_000)
    back = exported(addon, tmp_path)
    for field in FIELDS:
        assert getattr(back, field).tobytes() == getattr(original, field).tobytes(), field


@pytest.mark.parametrize("ext", [".glb", ".spz", ".compressed.ply"])
def test_export_writes_the_format_its_extension_names(addon, fresh_scene, tmp_path, ext):
    import bpy

    sf = splatfile(addon)
    arrays = small_arrays(sf, deg=3)
    src = tmp_path / "src.ply"
    sf.write_splats(arrays, src)
    import_file(src)
    out = tmp_path / f"export{ext}"
    assert bpy.ops.splatbrush.export_gaussians(filepath=str(out)) == {"FINISHED"}
    registry = sys.modules[addon + ".vendor.shared_protocol.splatfile.registry"]
    assert ext in registry.sniff_format(out).extensions  # the file's own bytes say so, not only its name
    back = sf.read_splats(out)
    assert back.num_gaussians == arrays.num_gaussians
    if ext == ".glb":  # lossless
        for field in FIELDS:
            assert getattr(back, field).tobytes() == getattr(arrays, field).tobytes(), field
