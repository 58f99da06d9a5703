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
import sys
import time
from pathlib import Path

import numpy as np
from blender_common import engine_render, look_at_camera, psnr, render_still, setup_world_black

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "out" / "blender_native"


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
    cam = look_at_camera(scene, arrays.means.mean(0).tolist(), args.offset, args.size)
    scene.view_settings.view_transform = "Standard"
    setup_world_black(scene)
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
    reference = engine_render(args.scene, bcam.to_opencv(), OUT / f"engine_{args.size}")
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
