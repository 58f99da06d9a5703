"""How faithfully Blender 5.3's native Gaussian splats show a scene: Blender's render of the scene imported
as a native splat point cloud (`blender_addon.native_splats`) vs the engine's render of the same file from
the same camera (run with the bpy 5.3 venv; the engine render runs in the main venv):

    .venv-blender-5.3/bin/python benchmarks/bench_blender_native.py [--scene ../shared/data/scenes/donut.ply]
        [--size 256] [--samples 64] [--engines CYCLES BLENDER_EEVEE BLENDER_WORKBENCH]

Same method as bench_blender_display.py (the Geometry Nodes display): a camera looking down at the object's
centre from (0, -0.3, 0.25) away, black world, view transform Standard, Cycles on the CPU without denoising
and a 0.01 px filter, PSNR of the 8-bit images. Images land in out/blender_native/.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "out" / "blender_native"
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


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def setup(scene, target, offset, size: int):
    import bpy
    from mathutils import Vector

    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    cam.location = Vector(target) + Vector(offset)
    cam.rotation_euler = (Vector(target) - cam.location).to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.color = (0.0, 0.0, 0.0)
    for node in world.node_tree.nodes if world.node_tree is not None else []:
        if node.type == "BACKGROUND":
            node.inputs["Strength"].default_value = 0.0
    bpy.context.view_layer.update()
    return cam


def render_still(scene, path: Path, engine: str, samples: int) -> np.ndarray:
    import bpy

    scene.render.engine = engine
    if engine == "CYCLES":
        scene.cycles.device, scene.cycles.samples, scene.cycles.use_denoising = "CPU", samples, False
        scene.cycles.filter_width = 0.01
    elif engine == "BLENDER_EEVEE":
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
    return px.reshape(h, w, 4)[::-1, :, :3]


def main() -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument(
        "--scene", type=Path, default=REPO.parent / "shared" / "data" / "scenes" / "donut.ply"
    )
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--offset", type=float, nargs=3, default=(0.0, -0.3, 0.25))
    parser.add_argument("--engines", nargs="+", default=["CYCLES"])
    parser.add_argument("--blur", type=float, default=0.0,
                        help="bake the 3DGS 2D blur (px^2) toward the camera")  # fmt: skip
    parser.add_argument("--raw", action="store_true",
                        help="with --blur: colours for view transform Raw (blend as 3DGS does)")  # fmt: skip
    args = parser.parse_args()

    import bpy

    sys.path[:0] = [str(REPO)]
    from blender_addon import native_splats
    from shared_protocol.cameras import BlenderCamera
    from shared_protocol.splatfile import read_splats

    if not native_splats.supported():
        print(f"Blender {bpy.app.version_string} has no native Gaussian splats (5.3+)")
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    scene = bpy.context.scene
    arrays = read_splats(args.scene)
    t0 = time.perf_counter()
    obj = native_splats.create_native_object(
        bpy.context, arrays, args.scene.stem, collection=scene.collection
    )
    t_import = time.perf_counter() - t0
    cam = setup(scene, arrays.means.mean(0).tolist(), args.offset, args.size)
    print(f"Blender {bpy.app.version_string}; {arrays.num_gaussians:,} splats (SH {arrays.sh_degree}); "
          f"native point cloud made in {t_import:.2f} s")  # fmt: skip
    bcam = BlenderCamera(
        matrix_world=np.array(cam.matrix_world), lens_mm=cam.data.lens,
        sensor_width=cam.data.sensor_width, resolution_x=args.size, resolution_y=args.size,
    )  # fmt: skip
    if args.blur > 0:
        t0 = time.perf_counter()
        native_splats.bake_native_for_view(obj, arrays, bcam.to_opencv(), args.blur, raw_view=args.raw)
        print(f"baked a {args.blur} px^2 blur toward the camera in {time.perf_counter() - t0:.2f} s "
              f"(view transform {scene.view_settings.view_transform})")  # fmt: skip
    cam_path, npy = OUT / f"camera_{args.size}.json", OUT / f"engine_{args.size}.npy"
    cam_path.write_text(json.dumps(bcam.to_opencv()))
    subprocess.run([str(ENGINE_PYTHON), "-c", ENGINE_RENDER, str(args.scene), str(cam_path), str(npy)],
                   check=True, cwd=REPO)  # fmt: skip
    reference = np.round(np.load(npy) * 255) / 255
    for engine in args.engines:
        t0 = time.perf_counter()
        try:
            tag = f"blur{args.blur:g}_{scene.view_settings.view_transform.lower()}"
            path = OUT / f"native_{engine.lower()}_{args.size}_{tag}.png"
            img = render_still(scene, path, engine, args.samples)
        except RuntimeError as e:
            print(f"{engine}: could not render here ({e})")
            continue
        print(f"{engine} {args.size}x{args.size} {args.samples} samples: {time.perf_counter() - t0:.1f} s, "
              f"PSNR vs engine {psnr(img, reference):.2f} dB (blur {args.blur:g}, "
              f"{scene.view_settings.view_transform})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
