#!/usr/bin/env python3
"""Build the Blender extension zip: dist/splatbrush-<version>.zip.

    python build.py                 # pyzmq + Pillow wheels for every declared platform x Blender Python, zip
    python build.py --local-only    # only this machine's platform (Python 3.11 + 3.13 wheels)
    python build.py --no-download   # offline: the wheels already in blender_addon/wheels/ (all must be there)
    python build.py --wheels DIR    # take (and download) the wheels in DIR instead

Steps: (1) `pip download --only-binary=:all: --platform ... --python-version ...` the pyzmq and Pillow wheels
into blender_addon/wheels/ (kept between builds: a wheel already there is not downloaded again) for every
platform the manifest declares and each Blender Python (3.11: Blender 4.2-5.0; 3.13: Blender 5.1+); (2) check
the bundle as Blender will: every platform x Python has a wheel of each requirement, and the Python versions
Blender derives from the wheel names (see `blender_python_versions`) include every target Python; (3) copy
the pure-numpy `shared_protocol` package into blender_addon/vendor/ (the add-on imports it relatively; Blender
has no torch, so nothing of `engine` may be imported by it); (4) write the zip with the manifest's `wheels`
list set to the wheels bundled and `platforms` to the platforms they cover. Both folders are git-ignored.
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
# Blender 4.2 LTS - 5.0 ship Python 3.11; Blender 5.1+ ship Python 3.13 (pyzmq's cp312-abi3 wheel fits it,
# but Blender's manifest check needs some wheel tagged cp313: see `blender_python_versions`)
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


def declared_platforms(manifest: str) -> list[str]:
    """The manifest's `platforms = [...]`, each one build.py knows pip tags for."""
    found = re.search(r"^platforms\s*=\s*\[([^\]]*)\]", manifest, flags=re.MULTILINE)
    if not found:
        raise SystemExit(f"build.py: {MANIFEST} has no `platforms = [...]` list")
    names = re.findall(r'"([^"]+)"', found.group(1))
    unknown = [n for n in names if n not in PLATFORMS]
    if unknown or not names:
        raise SystemExit(
            f"build.py: the manifest declares platform(s) {unknown or names!r}; build.py knows wheels for "
            f"{', '.join(PLATFORMS)}"
        )
    return names


def blender_python_versions(wheel_names: list[str]) -> set[tuple[int, ...]]:
    """The Python versions Blender (4.2-5.3, `bl_pkg`) derives from an extension's wheel file names, against
    which it checks its own Python on install: a stable-ABI wheel (`abi3`) counts as its major version only,
    any other wheel as the versions of its python tag (`cp311` -> (3, 11), `py3` -> (3,)); and a major version
    alone is dropped as soon as any (major, minor) is present. So cp311 + cp312-abi3 wheels give {(3, 11)},
    and Blender 5.3 (Python 3.13) refuses the zip although it would install the abi3 wheel there."""
    majors: set[tuple[int, ...]] = set()
    full: set[tuple[int, ...]] = set()
    for name in wheel_names:
        py_tag, abi_tag = name[:-4].split("-")[-3:-1]
        abi = {(int(t[3:]),) for t in abi_tag.split(".") if t.startswith("abi") and t[3:].isdigit()}
        found = abi or {
            (int(m.group(2)[0]), int(m.group(2)[1:])) if len(m.group(2)) > 1 else (int(m.group(2)),)
            for m in (re.match(r"^(cp|py)(\d+)$", t) for t in py_tag.split("."))
            if m
        }
        for version in found:
            if version[0] >= 3:
                (full if len(version) == 2 else majors).add(version)
    return full | {m for m in majors if not any(f[0] == m[0] for f in full)}


def blender_accepts(python: str, versions: set[tuple[int, ...]]) -> bool:
    """Does a Blender running `python` ("3.13") accept an extension whose wheels give `versions`?"""
    major, minor = (int(x) for x in python.split("."))
    return not versions or (major, minor) in versions or (major,) in versions


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


def _fitting(wheels_dir: Path, requirement: str, plat: str, python: str) -> list[Path]:
    return sorted(
        w
        for w in wheels_dir.glob(_wheel_prefix(requirement) + "*.whl")
        if wheel_matches(w.name, plat, python)
    )


def download_wheels(wheels_dir: Path, targets: list[tuple[str, str]], offline: bool) -> None:
    wheels_dir.mkdir(parents=True, exist_ok=True)
    missing = []
    for req in REQUIREMENTS:
        for plat, python in targets:
            if _fitting(wheels_dir, req, plat, python):
                continue
            if offline:
                missing.append(f"{req} for {plat} / Python {python}")
                continue
            cmd = [sys.executable, "-m", "pip", "download", req, "--only-binary=:all:", "--no-deps", "-q",
                   "--python-version", python, "--dest", str(wheels_dir),
                   "--disable-pip-version-check"]  # fmt: skip
            for tag in PLATFORMS[plat]:
                cmd += ["--platform", tag]
            print(f"[build] downloading {req} for {plat}, Python {python}")
            subprocess.run(cmd, check=True)
    if missing:
        raise SystemExit(
            f"build.py: --no-download given and no wheel in {wheels_dir} for: " + "; ".join(missing)
        )


def select_wheels(wheels_dir: Path, targets: list[tuple[str, str]]) -> list[Path]:
    chosen: list[Path] = []
    for req in REQUIREMENTS:
        for plat, python in targets:
            fits = _fitting(wheels_dir, req, plat, python)
            if not fits:
                raise SystemExit(f"build.py: no {req} wheel for {plat} / Python {python} in {wheels_dir}")
            if fits[-1] not in chosen:
                chosen.append(fits[-1])
    return chosen


def _bundled(wheel_names: list[str], requirement: str, plat: str, python: str) -> str | None:
    """The wheel of `requirement` that Blender on `plat` with `python` installs from `wheel_names`."""
    fits = [
        n for n in wheel_names if n.startswith(_wheel_prefix(requirement)) and wheel_matches(n, plat, python)
    ]
    return fits[-1] if fits else None


def check_bundle(wheel_names: list[str], targets: list[tuple[str, str]]) -> None:
    """Refuse a bundle that some target Blender would reject or run without a requirement: every platform
    x Python needs a wheel of each requirement, and Blender's derived Python versions must include each."""
    problems = [
        f"no {req} wheel for {plat} / Python {python}"
        for req in REQUIREMENTS
        for plat, python in targets
        if _bundled(wheel_names, req, plat, python) is None
    ]
    versions = blender_python_versions(wheel_names)
    shown = ", ".join(".".join(map(str, v)) for v in sorted(versions)) or "none"
    problems += [
        f"Blender with Python {python} would refuse the zip: its wheels declare Python {shown}"
        for python in sorted({p for _, p in targets})
        if not blender_accepts(python, versions)
    ]
    if problems:
        raise SystemExit("build.py: the bundle is incomplete: " + "; ".join(problems))


def contents_table(wheel_names: list[str], targets: list[tuple[str, str]]) -> str:
    """One line per platform x Python: the wheel Blender will install there for each requirement."""
    lines = []
    for plat, python in targets:
        picks = [_bundled(wheel_names, r, plat, python) or "-" for r in REQUIREMENTS]
        lines.append(f"  {plat:<12} Python {python}: " + ", ".join(picks))
    return "\n".join(lines)


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


def manifest_text(wheels: list[Path], platforms: list[str] | None = None) -> str:
    """The manifest with `wheels` listing the bundled files (and `platforms` narrowed to those covered)."""
    text = MANIFEST.read_text()
    listing = "wheels = [\n" + "".join(f'  "./wheels/{w.name}",\n' for w in wheels) + "]"
    new, count = re.subn(r"^wheels\s*=\s*\[[^\]]*\]", listing, text, flags=re.MULTILINE)
    if count != 1:
        raise SystemExit(f"build.py: {MANIFEST} must contain one `wheels = [...]` list")
    if platforms is not None:
        listed = "platforms = [" + ", ".join(f'"{p}"' for p in platforms) + "]"
        new = re.sub(r"^platforms\s*=\s*\[[^\]]*\]", listed, new, count=1, flags=re.MULTILINE)
    return new


def write_zip(version: str, wheels: list[Path], out_dir: Path, platforms: list[str]) -> Path:
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
        zf.writestr("blender_manifest.toml", manifest_text(wheels, platforms))
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
        "--no-download", action="store_true", help="never download: every wheel must be there already"
    )
    parser.add_argument(
        "--wheels", type=Path, default=WHEELS, help="wheel folder (default blender_addon/wheels/)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default dist/)")
    args = parser.parse_args(argv)

    manifest = MANIFEST.read_text()
    found = re.search(r'^version\s*=\s*"([^"]+)"', manifest, flags=re.MULTILINE)
    if not found:
        raise SystemExit(f"build.py: no version in {MANIFEST}")
    version = found.group(1)
    platforms = [local_platform()] if args.local_only else declared_platforms(manifest)
    targets = [(p, v) for p in platforms for v in PYTHON_VERSIONS]
    download_wheels(args.wheels, targets, offline=args.no_download)
    wheels = select_wheels(args.wheels, targets)
    check_bundle([w.name for w in wheels], targets)
    vendor_shared_protocol()
    out = write_zip(version, wheels, args.out, platforms)
    size = out.stat().st_size / 1e6
    with zipfile.ZipFile(out) as zf:
        files = zf.namelist()
    n_code = sum(1 for f in files if f.endswith(".py"))
    wheel_mb = sum(w.stat().st_size for w in wheels) / 1e6
    print(f"[build] wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} ({size:.1f} MB): "
          f"{len(files)} files, {n_code} Python modules, {len(wheels)} wheels ({wheel_mb:.1f} MB); "
          "Blender installs per platform:")  # fmt: skip
    print(contents_table([w.name for w in wheels], targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
