"""What the Blender benchmarks share (bench_blender_display.py, bench_blender_native.py): the engine's
reference render of a scene file from a camera (in the main venv, a subprocess), a look-at camera, a black
world, a still render read back as [H, W, 3] with row 0 at the top, and PSNR of 8-bit images."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ENGINE_PYTHON = REPO / ".venv" / "bin" / "python"

ENGINE_RENDER = """
import json, sys
import numpy as np
from engine import load_scene, render
from engine.cameras.camera import Camera
scene = load_scene(sys.argv[1])
cam = Camera.from_dict(json.load(open(sys.argv[2])))
img = render(scene, cam, background=(0.0, 0.0, 0.0)).image.detach().cpu().numpy()
np.save(sys.argv[3], np.clip(img, 0, 1))
"""


def look_at_camera(scene, target, offset, size: int):
    import bpy
    from mathutils import Vector

    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    cam.location = Vector(target) + Vector(offset)
    cam.rotation_euler = (Vector(target) - cam.location).to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    bpy.context.view_layer.update()  # matrix_world from the new location/rotation
    return cam


def setup_world_black(scene) -> None:
    import bpy

    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.color = (0.0, 0.0, 0.0)
    if world.node_tree is not None:
        for node in world.node_tree.nodes:
            if node.type == "BACKGROUND":
                node.inputs["Strength"].default_value = 0.0


def render_still(scene, path: Path, engine: str, samples: int) -> np.ndarray:
    import bpy

    scene.render.engine = engine
    if engine == "CYCLES":
        scene.cycles.device = "CPU"
        scene.cycles.samples = samples
        scene.cycles.use_denoising = False
        scene.cycles.filter_width = 0.01  # the engine samples pixel centres
    elif engine.startswith("BLENDER_EEVEE"):
        scene.eevee.taa_render_samples = samples
    scene.render.film_transparent = False
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(str(path))
    w, h = image.size
    px = np.empty(w * h * 4, dtype=np.float32)
    image.pixels.foreach_get(px)
    bpy.data.images.remove(image)
    return px.reshape(h, w, 4)[::-1, :, :3]  # row 0 at the top, as the engine's


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def engine_render(scene_path: Path, camera: dict, out: Path) -> np.ndarray:
    cam_path = out.with_suffix(".camera.json")
    cam_path.write_text(json.dumps(camera))
    npy = out.with_suffix(".npy")
    subprocess.run([str(ENGINE_PYTHON), "-c", ENGINE_RENDER, str(scene_path), str(cam_path), str(npy)],
                   check=True, cwd=REPO)  # fmt: skip
    img = np.load(npy)
    return np.round(img * 255) / 255
