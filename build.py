#!/usr/bin/env python3
"""Build the Blender extension zip: dist/splatbrush-<version>.zip.

    python build.py                 # pyzmq + Pillow wheels for every platform and Blender Python, vendor, zip
    python build.py --local-only    # only this machine's platform (Python 3.11 + 3.13 wheels)
    python build.py --no-download   # offline: bundle the wheels already in blender_addon/wheels/

Steps: (1) `pip download --only-binary=:all: --platform ... --python-version ...` the pyzmq and Pillow wheels
into blender_addon/wheels/ (kept between builds: a wheel already there is not downloaded again); (2) copy the
pure-numpy `shared_protocol` package into blender_addon/vendor/ (the add-on imports it relatively; Blender
has no torch, so nothing of `engine` may be imported by it); (3) write the zip with the manifest's `wheels`
list set to the wheels actually bundled. Both folders are git-ignored.
"""

from __future__ import annotations

import argparse
import ast
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON = ROOT / "blender_addon"
WHEELS = ADDON / "wheels"
VENDOR = ADDON / "vendor"
MANIFEST = ADDON / "blender_manifest.toml"

REQUIREMENTS = ("pyzmq==27.1.0", "pillow==13.0.0")
"""Bundled for every target: pyzmq (the engine link), Pillow (the WebP images of .sog files)."""
# Blender 4.2 LTS - 5.0 ship Python 3.11; Blender 5.1+ ship Python 3.13 (pyzmq's cp312-abi3 wheel fits it)
PYTHON_VERSIONS = ("3.11", "3.13")
# Blender platform name -> pip platform tags accepted for it (pip picks the best wheel it finds)
PLATFORMS = {
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux_2_26_x86_64", "manylinux2014_x86_64"],
    "windows-x64": ["win_amd64"],
    "macos-arm64": ["macosx_11_0_arm64"],
    "macos-x64": ["macosx_10_15_x86_64"],
}
EXCLUDE_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache"}
FORBIDDEN_ROOTS = ("engine", "torch", "shared_protocol")


def absolute_forbidden_imports(source: str) -> list[str]:
    """The absolute imports of engine / torch / shared_protocol in Python source (docstrings don't count)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [n for n in names if n.split(".")[0] in FORBIDDEN_ROOTS]
    return found


def local_platform() -> str:
    machine = platform.machine().lower()
    arch = "arm64" if machine in ("arm64", "aarch64") else "x64"
    system = {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(sys.platform, sys.platform)
    name = f"{system}-{arch}"
    if name not in PLATFORMS:
        raise SystemExit(f"build.py: no pyzmq wheels known for this platform ({name})")
    return name


def wheel_matches(wheel: str, plat: str, python: str) -> bool:
    """Does a wheel file name fit a Blender platform and Python version (as Blender itself decides)?"""
    py_tag, abi_tag, plat_tag = wheel[:-4].split("-")[-3:]
    major, minor = (int(x) for x in python.split("."))
    tags_py = [int(t[3:]) for t in py_tag.split(".") if t.startswith("cp") and t[3:].isdigit()]
    ok_py = minor in tags_py or (abi_tag == "abi3" and any(m <= minor for m in tags_py))
    suffix = {
        "linux-x64": "_x86_64",
        "windows-x64": "win_amd64",
        "macos-arm64": "_arm64",
        "macos-x64": "_x86_64",
    }
    if plat.startswith("macos"):
        ok_plat = plat_tag.startswith("macosx") and (
            plat_tag.endswith(suffix[plat]) or plat_tag.endswith("_universal2")
        )
    elif plat == "linux-x64":
        ok_plat = "manylinux" in plat_tag and plat_tag.endswith(suffix[plat])
    else:
        ok_plat = plat_tag == suffix[plat]
    return major == 3 and ok_py and ok_plat


def _wheel_prefix(requirement: str) -> str:
    """ "pyzmq==27.1.0" -> "pyzmq-": how the requirement's wheel files start."""
    return requirement.split("==")[0].replace("-", "_") + "-"


def _fitting(requirement: str, plat: str, python: str) -> list[Path]:
    return sorted(
        w for w in WHEELS.glob(_wheel_prefix(requirement) + "*.whl") if wheel_matches(w.name, plat, python)
    )


def download_wheels(targets: list[tuple[str, str]], offline: bool) -> None:
    WHEELS.mkdir(parents=True, exist_ok=True)
    for req in REQUIREMENTS:
        for plat, python in targets:
            if _fitting(req, plat, python):
                continue
            if offline:
                raise SystemExit(
                    f"build.py: no {req} wheel for {plat} / Python {python} in {WHEELS} "
                    "and --no-download given"
                )
            cmd = [sys.executable, "-m", "pip", "download", req, "--only-binary=:all:", "--no-deps", "-q",
                   "--python-version", python, "--dest", str(WHEELS),
                   "--disable-pip-version-check"]  # fmt: skip
            for tag in PLATFORMS[plat]:
                cmd += ["--platform", tag]
            print(f"[build] downloading {req} for {plat}, Python {python}")
            subprocess.run(cmd, check=True)


def select_wheels(targets: list[tuple[str, str]]) -> list[Path]:
    chosen: list[Path] = []
    for req in REQUIREMENTS:
        for plat, python in targets:
            fits = _fitting(req, plat, python)
            if not fits:
                raise SystemExit(f"build.py: no {req} wheel for {plat} / Python {python} in {WHEELS}")
            if fits[-1] not in chosen:
                chosen.append(fits[-1])
    return chosen


def vendor_shared_protocol() -> None:
    src = ROOT / "shared_protocol"
    dst = VENDOR / "shared_protocol"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (VENDOR / "__init__.py").write_text('"""Packages vendored by build.py (do not edit)."""\n')
    for path in dst.rglob("*.py"):
        bad = absolute_forbidden_imports(path.read_text())
        if bad:
            raise SystemExit(
                f"build.py: {path.relative_to(ROOT)} imports {bad[0]!r} absolutely; the vendored package "
                "must use relative imports and must not need engine or torch"
            )


def manifest_text(wheels: list[Path]) -> str:
    text = MANIFEST.read_text()
    listing = "wheels = [\n" + "".join(f'  "./wheels/{w.name}",\n' for w in wheels) + "]"
    new, count = re.subn(r"^wheels\s*=\s*\[[^\]]*\]", listing, text, flags=re.MULTILINE)
    if count != 1:
        raise SystemExit(f"build.py: {MANIFEST} must contain one `wheels = [...]` list")
    return new


def write_zip(version: str, wheels: list[Path], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"splatbrush-{version}.zip"
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(ADDON.rglob("*")):
            rel = path.relative_to(ADDON)
            if path.is_dir() or any(part in EXCLUDE_DIRS or part.startswith(".") for part in rel.parts):
                continue
            if rel.parts[0] == "wheels" or path.suffix == ".pyc" or rel.name == "blender_manifest.toml":
                continue
            zf.write(path, rel.as_posix())
        zf.writestr("blender_manifest.toml", manifest_text(wheels))
        for wheel in wheels:
            zf.write(wheel, f"wheels/{wheel.name}")
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--local-only", action="store_true", help="only this platform's wheels (Python 3.11 and 3.13)"
    )
    parser.add_argument(
        "--no-download", action="store_true", help="never download: bundle the wheels present"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default dist/)")
    args = parser.parse_args(argv)

    found = re.search(r'^version\s*=\s*"([^"]+)"', MANIFEST.read_text(), flags=re.MULTILINE)
    if not found:
        raise SystemExit(f"build.py: no version in {MANIFEST}")
    version = found.group(1)
    if args.local_only:
        targets = [(local_platform(), v) for v in PYTHON_VERSIONS]
    elif args.no_download:  # whatever is there, for every target it covers
        targets = [(p, v) for p in PLATFORMS for v in PYTHON_VERSIONS]
        present = [t for t in targets if all(_fitting(req, *t) for req in REQUIREMENTS)]
        targets = present or targets
    else:
        targets = [(p, v) for p in PLATFORMS for v in PYTHON_VERSIONS]
    download_wheels(targets, offline=args.no_download)
    wheels = select_wheels(targets)
    vendor_shared_protocol()
    out = write_zip(version, wheels, args.out)
    size = out.stat().st_size / 1e6
    print(f"[build] wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} ({size:.1f} MB) with "
          f"{len(wheels)} wheel(s): {', '.join(w.name for w in wheels)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
