"""Access to the `shared_protocol` package (pure numpy + pyzmq) without importing bpy or torch.

In the built extension `build.py` vendors the package as `<addon>/vendor/shared_protocol`, imported relatively
so that it never clashes with another add-on. In the development checkout (the package imported as
`blender_addon`, e.g. by plain pytest in the project's venv) the live top-level `shared_protocol` comes first,
so that a stale vendored copy never hides changes.
"""

from __future__ import annotations

import importlib
from types import ModuleType

DEV_PACKAGE = "blender_addon"


def shared_module(name: str = "") -> ModuleType:
    """`shared_module("splatfile")` -> the vendored `shared_protocol.splatfile` (or the installed one)."""
    suffix = f".{name}" if name else ""
    vendored = f"{__package__}.vendor.shared_protocol{suffix}"
    top_level = f"shared_protocol{suffix}"
    order = [top_level, vendored] if __package__ == DEV_PACKAGE else [vendored, top_level]
    for module in order:
        try:
            return importlib.import_module(module)
        except ModuleNotFoundError as e:
            root = (
                module.split(".shared_protocol")[0] + ".vendor" if module == vendored else "shared_protocol"
            )
            if e.name is None or not (
                e.name == root or e.name.startswith(root + ".") or root.startswith(e.name)
            ):
                raise  # a real missing dependency inside the package (e.g. zmq): report it as is
    raise ImportError(
        f"{top_level} is missing: this add-on was not built with build.py (which vendors shared_protocol "
        "into blender_addon/vendor/). Run `python build.py` and install the zip it writes."
    )
