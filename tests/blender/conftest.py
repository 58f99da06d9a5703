"""Fixtures for the tests in real Blender (bpy as a module; run by scripts/test_blender.sh).

In the project's main venv (no bpy) nothing here is collected. Blender keeps its user resources in a fresh
temporary folder per session (BLENDER_USER_RESOURCES, set before bpy is imported), so tests never touch the
user's own Blender configuration.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
ENGINE_PYTHON = Path(os.environ.get("SPLATBRUSH_ENGINE_PYTHON", REPO / ".venv" / "bin" / "python"))
OUT = REPO / "out" / "blender"

if importlib.util.find_spec("bpy") is None:
    collect_ignore_glob = ["test_*.py"]  # plain venv: these tests need Blender
else:
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="splatbrush-blender-user-"))


def addon_zip() -> Path:
    env = os.environ.get("SPLATBRUSH_ZIP")
    if env:
        return Path(env)
    zips = sorted((REPO / "dist").glob("splatbrush-*.zip"), key=lambda p: p.stat().st_mtime)
    if not zips:
        pytest.fail(
            "no dist/splatbrush-*.zip: run `python build.py --local-only` first (test_blender.sh does)"
        )
    return zips[-1]


@pytest.fixture(scope="session")
def addon():
    """Install the built zip as an extension in the user repository and enable it; yields the module name."""
    import bpy

    path = addon_zip()
    result = bpy.ops.extensions.package_install_files(
        filepath=str(path), repo="user_default", enable_on_install=True
    )
    assert result == {"FINISHED"}, result
    module = "bl_ext.user_default.splatbrush"
    assert module in bpy.context.preferences.addons, list(bpy.context.preferences.addons.keys())
    yield module


def reset_scene() -> None:
    """No objects, cameras, meshes or images; the Splatbrush settings and run state at their defaults, the
    scene's colour management as in a new file: what each test starts from, whatever ran before it."""
    import bpy

    for coll in (bpy.data.objects, bpy.data.cameras, bpy.data.meshes, bpy.data.images):
        for item in list(coll):
            coll.remove(item)
    scene = bpy.context.scene
    for group in (scene.splatbrush, bpy.context.window_manager.splatbrush):
        for prop in group.bl_rna.properties:
            if prop.identifier != "rna_type":
                group.property_unset(prop.identifier)
    scene.view_settings.view_transform = "AgX" if bpy.app.version >= (4, 0, 0) else "Filmic"
    scene.camera = None
    scene.render.film_transparent = False
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"  # a test that saved RGB would hide the next one's alpha


@pytest.fixture
def fresh_scene(addon):
    import bpy

    reset_scene()
    yield bpy.context.scene


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (../shared/data beside the repo)")
    return SHARED_DATA


@pytest.fixture
def out_dir() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    return OUT


@pytest.fixture
def free_port() -> int:
    """A loopback TCP port that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def engine_python() -> Path:
    if not ENGINE_PYTHON.exists():
        pytest.skip(f"no engine Python at {ENGINE_PYTHON} (create the main venv: scripts/setup_venv.sh)")
    probe = subprocess.run(
        [str(ENGINE_PYTHON), "-m", "engine", "serve", "--help"], capture_output=True, text=True, timeout=120
    )
    if probe.returncode != 0:
        pytest.skip(f"`{ENGINE_PYTHON} -m engine serve` is not available: {probe.stderr[-300:]}")
    return ENGINE_PYTHON


@pytest.fixture
def wait_until():
    def wait(predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        pytest.fail(f"timed out after {timeout} s waiting for {what}")

    return wait


def render_pixels(scene, path: Path):
    """Render `scene` to the image file `path` (its current render settings) and read it back: float32
    [H, W, 4] in Blender's order (row 0 at the bottom), the loaded image removed again."""
    import bpy
    import numpy as np

    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(str(path))
    w, h = image.size
    px = np.empty(w * h * 4, dtype=np.float32)
    image.pixels.foreach_get(px)
    bpy.data.images.remove(image)
    return px.reshape(h, w, 4)
