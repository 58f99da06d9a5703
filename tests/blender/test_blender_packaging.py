"""build.py's model of Blender's extension checks, against Blender's own code (bl_pkg) in real Blender: the
Python versions Blender derives from wheel names, and a zip whose wheels Blender reads as "3.11 only"
refused on Blender's Python 3.13 exactly when build.py says so."""

from __future__ import annotations

import importlib.util
import re
import sys
import zipfile

import pytest

from .conftest import REPO, addon_zip

CASES = [
    ["pyzmq-27.1.0-cp311-cp311-win_amd64.whl", "pyzmq-27.1.0-cp312-abi3-win_amd64.whl"],
    [
        "pyzmq-27.1.0-cp311-cp311-win_amd64.whl",
        "pyzmq-27.1.0-cp312-abi3-win_amd64.whl",
        "pillow-13.0.0-cp313-cp313-win_amd64.whl",
    ],
    ["pyzmq-27.1.0-cp312-abi3-macosx_10_15_universal2.whl"],
    ["six-1.17.0-py2.py3-none-any.whl"],
    ["numpy-2.0.0-cp311-cp311-win_amd64.whl", "six-1.17.0-py2.py3-none-any.whl"],
    ["a-1.0-cp310.cp311-cp310.cp311-manylinux_2_28_x86_64.whl"],
]


@pytest.fixture(scope="module")
def build():
    spec = importlib.util.spec_from_file_location("splatbrush_build", REPO / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["splatbrush_build"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def blender_rule():
    import bpy  # noqa: F401  (puts Blender's add-on folders on sys.path)

    try:
        from bl_pkg.bl_extension_utils import python_versions_from_wheels
    except ImportError as e:
        pytest.skip(f"this Blender has no bl_pkg.bl_extension_utils.python_versions_from_wheels: {e}")
    return python_versions_from_wheels


@pytest.mark.parametrize("names", CASES, ids=lambda n: "+".join(w.split("-")[0] + w.split("-")[2] for w in n))
def test_build_derives_python_versions_as_blender_does(build, blender_rule, names):
    assert build.blender_python_versions(names) == blender_rule(names)


def test_the_built_zip_is_accepted_by_blenders_rule(addon, build, blender_rule):
    names = re.findall(
        r'"\./wheels/([^"]+)"', zipfile.ZipFile(addon_zip()).read("blender_manifest.toml").decode()
    )
    python = "{}.{}".format(*sys.version_info[:2])
    assert build.blender_accepts(python, blender_rule(names)), (python, names)


def test_zip_without_a_cp313_wheel_is_refused_on_python_313(addon, build, tmp_path):
    """The zip minus Pillow (pyzmq's cp311 + cp312-abi3 left): build.py's check says Blender 5.3 refuses it,
    and real Blender on Python 3.13 does, when it enables it. Installed under another id: over the installed
    extension (same id) Blender 5.3 replaces its files first and leaves it disabled. On 3.11 both accept it
    (not installed there: two copies of the add-on would register the same classes)."""
    import bpy

    src = zipfile.ZipFile(addon_zip())
    manifest = src.read("blender_manifest.toml").decode()
    manifest = re.sub(r'  "\./wheels/pillow[^"]*",\n', "", manifest)
    manifest = re.sub(r"^id = .*$", 'id = "splatbrush_refused"', manifest, count=1, flags=re.MULTILINE)
    variant = tmp_path / "no_pillow.zip"
    with zipfile.ZipFile(variant, "w") as out:
        for item in src.namelist():
            if not item.startswith("wheels/pillow") and item != "blender_manifest.toml":
                out.writestr(item, src.read(item))
        out.writestr("blender_manifest.toml", manifest)
    names = re.findall(r'"\./wheels/([^"]+)"', manifest)
    python = "{}.{}".format(*sys.version_info[:2])
    accepted = build.blender_accepts(python, build.blender_python_versions(names))
    assert accepted == (sys.version_info[:2] < (3, 12))
    if accepted:
        return
    repo_index = [r.module for r in bpy.context.preferences.extensions.repos].index("user_default")
    try:
        with pytest.raises(RuntimeError, match=r"Python version \(3\.13\) isn't compatible with \(3\.11\)"):
            bpy.ops.extensions.package_install_files(
                filepath=str(variant), repo="user_default", enable_on_install=True
            )
    finally:
        bpy.ops.extensions.package_uninstall(repo_index=repo_index, pkg_id="splatbrush_refused")
    assert hasattr(bpy.types.Scene, "splatbrush")  # the extension under test is untouched
