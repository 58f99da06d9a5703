"""How faithfully Blender shows splats: Blender's render of an imported scene vs the engine's render of the
same file from the same camera (run with a bpy venv; the engine render runs in the main venv):

    .venv-blender-4.2/bin/python benchmarks/bench_blender_display.py [--scene ../shared/data/scenes/donut.ply]
        [--size 256] [--samples 64] [--eevee] [--addon DIR] [--replicate 1000000]

Imports the scene with the add-on's own code (`--addon DIR`: a `blender_addon` folder, e.g. an older
checkout's, to measure its display; default: this checkout's), bakes the display toward the camera,
renders Cycles (CPU) with the camera of the Blender test (looking down at the object's centre), renders the
same camera with `.venv/bin/python` + `engine.render`, and prints PSNR (8-bit PNGs, black background). The
images land in out/blender_display/. `--replicate N` also times building and rendering N splats (copies of
the scene side by side) at 64x64, 1 sample: the draw cost of a big scene.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import time
from pathlib import Path

import numpy as np
from blender_common import engine_render, look_at_camera, psnr, render_still, setup_world_black

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "out" / "blender_display"


def load_addon(addon_dir: Path):
    sys.path.insert(0, str(addon_dir.parent))
    sys.path.insert(1, str(REPO))  # shared_protocol, when the add-on folder has none vendored
    name = addon_dir.name
    return importlib.import_module(f"{name}.splats"), importlib.import_module("shared_protocol.splatfile")


def bench_replicated(splats, splatfile, arrays, n: int) -> None:
    import bpy

    copies = max(1, n // arrays.num_gaussians)
    extent = np.ptp(arrays.means, axis=0).max() * 1.2
    grid = int(math.ceil(math.sqrt(copies)))
    offsets = np.array([[(i % grid) * extent, (i // grid) * extent, 0] for i in range(copies)], np.float32)
    big = splatfile.SplatArrays(
        means=(arrays.means[None] + offsets[:, None]).reshape(-1, 3),
        quats=np.tile(arrays.quats, (copies, 1)),
        log_scales=np.tile(arrays.log_scales, (copies, 1)),
        opacity_logits=np.tile(arrays.opacity_logits, copies),
        sh=np.tile(arrays.sh, (copies, 1, 1)),
    )
    t0 = time.perf_counter()
    obj = splats.create_splat_object(bpy.context, big, "big")
    splats.ensure_display(obj, points=False)
    t_create = time.perf_counter() - t0
    scene = bpy.context.scene
    centre = big.means.mean(0)
    look_at_camera(scene, centre.tolist(), (0.0, -grid * extent, grid * extent), 64)
    t0 = time.perf_counter()
    bpy.context.view_layer.update()
    depsgraph = bpy.context.evaluated_depsgraph_get()
    n_inst = sum(1 for _ in depsgraph.object_instances)
    t_eval = time.perf_counter() - t0
    t0 = time.perf_counter()
    render_still(scene, OUT / "replicated.png", "CYCLES", 1)
    t_render = time.perf_counter() - t0
    print(f"{big.num_gaussians:,} splats ({copies} copies): object {t_create:.2f} s, Geometry Nodes")
    print(f"  evaluation {t_eval:.2f} s ({n_inst:,} instances), Cycles 64x64 1 sample {t_render:.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scene", type=Path, default=REPO.parent / "shared" / "data" / "scenes" / "donut.ply"
    )
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--offset", type=float, nargs=3, default=(0.0, -0.3, 0.25))
    parser.add_argument("--eevee", action="store_true", help="also render EEVEE (needs a GPU context)")
    parser.add_argument("--addon", type=Path, default=REPO / "blender_addon")
    parser.add_argument("--tag", default="current")
    parser.add_argument("--replicate", type=int, default=0)
    parser.add_argument("--raw", action="store_true", help="display_space=True: view Raw, blend as 3DGS")
    parser.add_argument(
        "--min-transparent",
        type=int,
        default=None,
        help="Cycles min_transparent_bounces (no roulette before)",
    )
    parser.add_argument("--realize", choices=("on", "off"), default=None, help="cards as one mesh or not")
    args = parser.parse_args()

    import bpy

    splats, splatfile = load_addon(args.addon.resolve())
    OUT.mkdir(parents=True, exist_ok=True)
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    scene = bpy.context.scene
    arrays = splatfile.read_splats(args.scene)
    t0 = time.perf_counter()
    obj = splats.create_splat_object(bpy.context, arrays, args.scene.stem)
    t_import = time.perf_counter() - t0
    cam = look_at_camera(scene, arrays.means.mean(0).tolist(), args.offset, args.size)
    setup_world_black(scene)
    scene.render.engine = "CYCLES"  # what the bake sets the display up for (cards as one mesh)
    t0 = time.perf_counter()
    setup = {"display_space": args.raw} if args.raw else {}  # an older add-on: its own defaults
    splats.setup_scene_for_splats(scene, **setup)  # view, bounces; the current display bakes the camera
    if args.min_transparent is not None:
        scene.cycles.min_transparent_bounces = args.min_transparent
    if args.realize is not None:
        importlib.import_module(splats.__package__ + ".display")._set_input(
            obj, "Realize", args.realize == "on"
        )
    t_bake = time.perf_counter() - t0
    print(f"Blender {bpy.app.version_string}; {arrays.num_gaussians:,} splats (SH {arrays.sh_degree}); "
          f"object {t_import:.2f} s, setup/bake {t_bake:.2f} s; display from {args.addon}")  # fmt: skip

    from shared_protocol.cameras import BlenderCamera

    bcam = BlenderCamera(
        matrix_world=np.array(cam.matrix_world),
        lens_mm=cam.data.lens,
        sensor_width=cam.data.sensor_width,
        resolution_x=args.size,
        resolution_y=args.size,
    )
    reference = engine_render(args.scene, bcam.to_opencv(), OUT / f"engine_{args.size}")
    renders = [("CYCLES", args.samples)] + ([("BLENDER_EEVEE_NEXT", args.samples)] if args.eevee else [])
    for engine, samples in renders:
        if engine.startswith("BLENDER_EEVEE") and bpy.app.version >= (5, 0, 0):
            engine = "BLENDER_EEVEE"
        if engine != "CYCLES":  # EEVEE sorts instances, not the triangles of one mesh: as the bake sets it
            importlib.import_module(splats.__package__ + ".display")._set_input(obj, "Realize", False)
        t0 = time.perf_counter()
        try:
            img = render_still(scene, OUT / f"{args.tag}_{engine.lower()}_{bpy.app.version_string[:3]}.png",
                               engine, samples)  # fmt: skip
        except RuntimeError as e:
            print(f"{engine}: could not render here ({e})")
            continue
        dt = time.perf_counter() - t0
        print(f"{engine} {args.size}x{args.size} {samples} samples: {dt:.1f} s, PSNR vs engine "
              f"{psnr(img, reference):.2f} dB ({args.tag})")  # fmt: skip
    if args.replicate:
        bench_replicated(splats, splatfile, arrays, args.replicate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
