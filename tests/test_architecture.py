"""Rules of the tree that a newcomer relies on: fixtures stay out of production code, no import cycles
between the engine's layers, no giant files or functions."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = ("engine", "shared_protocol", "blender_addon")


def _py_files(*packages: str):
    for pkg in packages:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            if "vendor" in f.parts or "wheels" in f.parts:
                continue
            yield f


def _imports(path: Path) -> set[str]:
    """Absolute module names imported by `path` (relative imports resolved against its package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def test_production_code_never_imports_the_test_fixtures():
    offenders = [
        str(f.relative_to(ROOT))
        for f in _py_files(*PRODUCTION)
        if "testing" not in f.parts and any(m.startswith("engine.testing") for m in _imports(f))
    ]
    assert offenders == []


def test_shared_protocol_is_pure_python_and_numpy():
    """The Blender add-on imports shared_protocol: it must not pull in torch or the engine."""
    for f in _py_files("shared_protocol"):
        bad = {m for m in _imports(f) if m.split(".")[0] in ("torch", "engine", "bpy")}
        assert not bad, f"{f.relative_to(ROOT)} imports {sorted(bad)}"


def test_guidance_and_models_import_each_other_without_a_cycle():
    """Each of these imports alone in a fresh interpreter (a cycle would fail for one of the orders)."""
    for first in ("engine.models", "engine.guidance.registry", "engine.stylize", "engine.cli"):
        code = f"import {first}; import engine.models, engine.guidance.registry, engine.stylize"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0, f"import {first} first: {r.stderr[-600:]}"


@pytest.mark.parametrize("package", PRODUCTION)
def test_no_giant_files_or_functions(package):
    long_files, long_functions = [], []
    for f in _py_files(package):
        text = f.read_text(encoding="utf-8")
        if text.count("\n") > 500:
            long_files.append(f"{f.relative_to(ROOT)} ({text.count(chr(10))} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 100:
                    long_functions.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert long_files == [] and long_functions == []


def test_every_guidance_module_is_registered():
    """A module under engine/guidance defining a Guidance subclass is reachable through the registry."""
    from engine.guidance import registry
    from engine.guidance.base import Guidance

    registered = {spec.cls for spec in registry.GUIDANCE.values()}
    for f in sorted((ROOT / "engine" / "guidance").glob("*.py")):
        mod = importlib.import_module(f"engine.guidance.{f.stem}")
        for obj in vars(mod).values():
            is_module = isinstance(obj, type) and issubclass(obj, Guidance) and obj.__module__ == mod.__name__
            if is_module and getattr(obj, "name", "guidance") != "guidance" and "name" in vars(obj):
                assert obj in registered, (
                    f"{obj.__name__} ({f.name}) has no entry in engine/guidance/registry.py"
                )
