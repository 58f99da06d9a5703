"""build.py: the extension zip covers every platform the manifest declares x each Blender Python (3.11 for
Blender 4.2-5.0, 3.13 for 5.1+), and is refused when a wheel is missing or when Blender's own Python-version
check would reject it. Built offline from fake wheel files: nothing is downloaded."""

from __future__ import annotations

import importlib.util
import re
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("splatbrush_build", ROOT / "build.py")
build = importlib.util.module_from_spec(_spec)
sys.modules["splatbrush_build"] = build
_spec.loader.exec_module(build)

# one file name per (requirement, Blender platform, Python), as pip downloads them for pyzmq 27 / Pillow 13
ML = "manylinux_2_28_x86_64"
FAKE = {
    ("pyzmq", "linux-x64", "3.11"): f"pyzmq-27.1.0-cp311-cp311-manylinux_2_26_x86_64.{ML}.whl",
    ("pyzmq", "linux-x64", "3.13"): f"pyzmq-27.1.0-cp312-abi3-manylinux_2_26_x86_64.{ML}.whl",
    ("pyzmq", "windows-x64", "3.11"): "pyzmq-27.1.0-cp311-cp311-win_amd64.whl",
    ("pyzmq", "windows-x64", "3.13"): "pyzmq-27.1.0-cp312-abi3-win_amd64.whl",
    ("pyzmq", "macos-arm64", "3.11"): "pyzmq-27.1.0-cp311-cp311-macosx_11_0_arm64.whl",
    ("pyzmq", "macos-arm64", "3.13"): "pyzmq-27.1.0-cp312-abi3-macosx_11_0_arm64.whl",
    ("pyzmq", "macos-x64", "3.11"): "pyzmq-27.1.0-cp311-cp311-macosx_10_15_x86_64.whl",
    ("pyzmq", "macos-x64", "3.13"): "pyzmq-27.1.0-cp312-abi3-macosx_10_15_x86_64.whl",
    ("pillow", "linux-x64", "3.11"): f"pillow-13.0.0-cp311-cp311-manylinux_2_27_x86_64.{ML}.whl",
    ("pillow", "linux-x64", "3.13"): f"pillow-13.0.0-cp313-cp313-manylinux_2_27_x86_64.{ML}.whl",
    ("pillow", "windows-x64", "3.11"): "pillow-13.0.0-cp311-cp311-win_amd64.whl",
    ("pillow", "windows-x64", "3.13"): "pillow-13.0.0-cp313-cp313-win_amd64.whl",
    ("pillow", "macos-arm64", "3.11"): "pillow-13.0.0-cp311-cp311-macosx_11_0_arm64.whl",
    ("pillow", "macos-arm64", "3.13"): "pillow-13.0.0-cp313-cp313-macosx_11_0_arm64.whl",
    ("pillow", "macos-x64", "3.11"): "pillow-13.0.0-cp311-cp311-macosx_10_10_x86_64.whl",
    ("pillow", "macos-x64", "3.13"): "pillow-13.0.0-cp313-cp313-macosx_10_13_x86_64.whl",
}


def _fake_wheels(folder: Path, names) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"not a real wheel: " + name.encode())
    return folder


def _zip_manifest(path: Path) -> str:
    with zipfile.ZipFile(path) as zf:
        return zf.read("blender_manifest.toml").decode()


def test_fake_set_covers_exactly_the_declared_targets():
    """The fixture itself: one wheel per requirement x declared platform x Python (else the tests below
    would prove nothing)."""
    declared = build.declared_platforms(build.MANIFEST.read_text())
    reqs = [build._wheel_prefix(r)[:-1] for r in build.REQUIREMENTS]
    assert set(FAKE) == {(r, p, v) for r in reqs for p in declared for v in build.PYTHON_VERSIONS}
    assert set(declared) == {"linux-x64", "windows-x64", "macos-arm64", "macos-x64"}


def test_offline_build_bundles_a_wheel_for_every_platform_and_python(tmp_path, capsys):
    wheels = _fake_wheels(tmp_path / "wheels", FAKE.values())
    _fake_wheels(wheels, ["pyzmq-27.1.0-cp310-cp310-win_amd64.whl"])  # fits no target: left out
    assert build.main(["--no-download", "--wheels", str(wheels), "--out", str(tmp_path / "dist")]) == 0
    out = tmp_path / "dist" / "splatbrush-0.1.0.zip"
    with zipfile.ZipFile(out) as zf:
        bundled = {Path(n).name for n in zf.namelist() if n.startswith("wheels/")}
        assert "vendor/shared_protocol/__init__.py" in zf.namelist()
    assert bundled == set(FAKE.values())
    manifest = _zip_manifest(out)
    listed = set(re.findall(r'"\./wheels/([^"]+)"', manifest))
    assert listed == bundled
    assert build.declared_platforms(manifest) == build.declared_platforms(build.MANIFEST.read_text())
    printed = capsys.readouterr().out
    assert "windows-x64  Python 3.13: pyzmq-27.1.0-cp312-abi3-win_amd64.whl, pillow-13.0.0-cp313" in printed


@pytest.mark.parametrize("missing", sorted(FAKE), ids=lambda k: "-".join(k))
def test_offline_build_refuses_when_one_wheel_is_missing(tmp_path, missing):
    wheels = _fake_wheels(tmp_path / "wheels", [n for k, n in FAKE.items() if k != missing])
    with pytest.raises(SystemExit) as err:
        build.main(["--no-download", "--wheels", str(wheels), "--out", str(tmp_path / "dist")])
    req, plat, python = missing
    assert f"{req}==" in str(err.value) and f"for {plat} / Python {python}" in str(err.value)
    assert not (tmp_path / "dist").exists()


def test_local_only_build_narrows_the_declared_platforms(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "local_platform", lambda: "windows-x64")
    wheels = _fake_wheels(tmp_path / "wheels", [n for (_, p, _), n in FAKE.items() if p == "windows-x64"])
    args = ["--local-only", "--no-download", "--wheels", str(wheels), "--out", str(tmp_path / "dist")]
    assert build.main(args) == 0
    manifest = _zip_manifest(tmp_path / "dist" / "splatbrush-0.1.0.zip")
    assert build.declared_platforms(manifest) == ["windows-x64"]
    assert len(re.findall(r'"\./wheels/', manifest)) == 4


# Blender's rule, as observed in real Blender 5.3.0: a zip with only pyzmq's cp311 + cp312-abi3 wheels is
# refused ("This Python version (3.13) isn't compatible with (3.11)"); a Pillow cp313 wheel fixes it.
@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["pyzmq-27.1.0-cp311-cp311-win_amd64.whl", "pyzmq-27.1.0-cp312-abi3-win_amd64.whl"], {(3, 11)}),
        (
            [
                "pyzmq-27.1.0-cp311-cp311-win_amd64.whl",
                "pyzmq-27.1.0-cp312-abi3-win_amd64.whl",
                "pillow-13.0.0-cp313-cp313-win_amd64.whl",
            ],
            {(3, 11), (3, 13)},
        ),
        (["pyzmq-27.1.0-cp312-abi3-win_amd64.whl"], {(3,)}),
        (["six-1.17.0-py2.py3-none-any.whl"], {(3,)}),
        (["numpy-2.0.0-cp311-cp311-win_amd64.whl", "six-1.17.0-py2.py3-none-any.whl"], {(3, 11)}),
    ],
)
def test_blender_python_versions_follow_blenders_rule(names, expected):
    assert build.blender_python_versions(names) == expected


def test_blender_accepts():
    assert build.blender_accepts("3.13", {(3, 11), (3, 13)})
    assert not build.blender_accepts("3.13", {(3, 11)})
    assert build.blender_accepts("3.13", {(3,)})
    assert not build.blender_accepts("3.11", {(3, 13)})


def test_bundle_that_blender_53_would_refuse_is_refused(monkeypatch):
    """pyzmq alone (cp311 + cp312-abi3) fits Python 3.13 by pip's rules, not by Blender's manifest check."""
    monkeypatch.setattr(build, "REQUIREMENTS", ("pyzmq==27.1.0",))
    names = [n for (r, p, _), n in FAKE.items() if r == "pyzmq" and p == "linux-x64"]
    with pytest.raises(
        SystemExit, match=r"Python 3\.13 would refuse the zip: its wheels declare Python 3\.11"
    ):
        build.check_bundle(names, [("linux-x64", "3.11"), ("linux-x64", "3.13")])
    build.check_bundle(names, [("linux-x64", "3.11")])  # a 4.2-5.0-only bundle is fine


def test_unknown_declared_platform_is_refused_by_name():
    with pytest.raises(SystemExit, match="linux-arm64"):
        build.declared_platforms('platforms = ["linux-x64", "linux-arm64"]\n')
