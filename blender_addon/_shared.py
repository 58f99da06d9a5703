"""Access to the `shared_protocol` package (pure numpy + pyzmq) without importing bpy or torch.

In the built extension `build.py` vendors the package as `<addon>/vendor/shared_protocol`, imported relatively
so that it never clashes with another add-on. In a development checkout (plain pytest in the project's venv)
the installed top-level `shared_protocol` is used instead.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def shared_module(name: str = "") -> ModuleType:
    """`shared_module("splatfile")` -> the vendored `shared_protocol.splatfile` (or the installed one)."""
    suffix = f".{name}" if name else ""
    try:
        return importlib.import_module(f"{__package__}.vendor.shared_protocol{suffix}")
    except ModuleNotFoundError as e:
        vendored = f"{__package__}.vendor"
        if e.name is None or not (e.name == vendored or e.name.startswith(vendored + ".")):
            raise  # a real missing dependency inside the vendored package: report it as is
    try:
        return importlib.import_module(f"shared_protocol{suffix}")
    except ModuleNotFoundError as e:
        raise ImportError(
            f"shared_protocol{suffix} is missing: this add-on was not built with build.py "
            "(which vendors shared_protocol into blender_addon/vendor/). Run `python build.py` and "
            "install the zip it writes."
        ) from e
