"""Blender add-on benchmark (run with a bpy venv, after `python build.py --local-only`):

    .venv-blender-4.2/bin/python benchmarks/bench_blender.py [--n 1000000] [--sh-degree 3] [--no-engine]

Prints (1) import and export time of an N-Gaussian .ply through the installed extension's operators, with
the parts (file read, object creation incl. display attributes, attribute read-back, file write); (2) the
Stylize overhead outside the optimization: export from the object, submit (transfer to the engine),
fetch of the result and its import as a new object, against a real engine started with the
`synthetic` runner (`.venv/bin/python -m engine serve --runner synthetic`, 1 step), so the optimization
itself costs next to nothing.
"""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="splatbrush-bench-user-"))
MODULE = "bl_ext.user_default.splatbrush"


def timed(fn, repeat: int = 3):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def install_addon():
    import bpy

    zips = sorted((REPO / "dist").glob("splatbrush-*.zip"), key=lambda p: p.stat().st_mtime)
    if not zips:
        raise SystemExit("no dist/splatbrush-*.zip: run `python build.py --local-only` first")
    bpy.ops.extensions.package_install_files(
        filepath=str(zips[-1]), repo="user_default", enable_on_install=True
    )
    import importlib

    return {m: importlib.import_module(f"{MODULE}.{m}") for m in ("splats", "jobs", "engine_link", "views")}


def random_arrays(splatfile, n: int, degree: int):
    import numpy as np

    rng = np.random.default_rng(0)
    k = (degree + 1) ** 2
    return splatfile.SplatArrays(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        log_scales=rng.normal(-4, 0.5, size=(n, 3)).astype(np.float32),
        opacity_logits=rng.normal(size=n).astype(np.float32),
        sh=(rng.normal(size=(n, k, 3)) * 0.3).astype(np.float32),
    )


def clear_objects():
    import bpy

    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    for mesh in list(bpy.data.meshes):
        bpy.data.meshes.remove(mesh)


def bench_io(mods, splatfile, n: int, degree: int, tmp: Path) -> None:
    import bpy

    src, dst = tmp / "bench.ply", tmp / "bench_export.ply"
    splatfile.write_splats(random_arrays(splatfile, n, degree), src)
    print(f"scene: {n:,} Gaussians, SH degree {degree}, {src.stat().st_size / 1e6:.0f} MB .ply")

    def do_import():
        clear_objects()
        bpy.ops.splatbrush.import_gaussians(filepath=str(src))

    t_import, _ = timed(do_import)
    t_export, _ = timed(lambda: bpy.ops.splatbrush.export_gaussians(filepath=str(dst)))
    obj = bpy.context.active_object
    t_read, arrays = timed(lambda: splatfile.read_splats(src))
    t_create, _ = timed(lambda: mods["splats"].create_splat_object(bpy.context, arrays, "bench"))
    t_get, back = timed(lambda: mods["splats"].arrays_from_object(obj))
    t_write, _ = timed(lambda: splatfile.write_splats(back, dst))
    exact = all(getattr(back, f).tobytes() == getattr(arrays, f).tobytes() for f in splatfile.GAUSSIAN_FIELDS)
    print(f"import operator      {t_import:7.3f} s   (file read {t_read:.3f} s + object {t_create:.3f} s)")
    print(f"export operator      {t_export:7.3f} s   (attributes {t_get:.3f} s + file write {t_write:.3f} s)")
    print(f"export bit-exact     {exact}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_stylize_overhead(mods, splatfile, n: int, degree: int, tmp: Path) -> None:
    import bpy
    import numpy as np

    python = REPO / ".venv" / "bin" / "python"
    if not python.exists():
        print(f"stylize overhead: skipped (no engine Python at {python})")
        return
    address = f"tcp://127.0.0.1:{free_port()}"
    cmd = [str(python), "-m", "engine", "serve", "--address", address, "--state-dir", str(tmp / "state"),
           "--runner", "synthetic", "--max-gaussians", str(max(n, 1_000_000))]  # fmt: skip
    engine = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        clear_objects()
        obj = mods["splats"].create_splat_object(bpy.context, random_arrays(splatfile, n, degree), "src")
        t0 = time.perf_counter()
        gaussians = mods["splats"].arrays_from_object(obj)
        t_export = time.perf_counter() - t0
        views = mods["views"].orbit_views([-2, -2, -2], [2, 2, 2], 4, 64)
        style = np.zeros((256, 256, 3), np.uint8)
        options = mods["jobs"].EngineOptions(address=address, auto_start=False, start_timeout=120)
        settings = {"preset": "preview", "steps": 1, "size": 64, "views": 4, "seed": 0, "device": "cpu"}
        task = mods["jobs"].StylizeTask(options, gaussians, style, views, settings)
        deadline = time.monotonic() + 120
        while True:  # wait for the engine to come up (not counted), then run
            status = task.tick()
            if status.state != "failed" or time.monotonic() > deadline:
                break
            task = mods["jobs"].StylizeTask(options, gaussians, style, views, settings)
            time.sleep(0.5)
        status = task.run_to_end(poll_interval=0.01, timeout=300)
        if status.state != "done":
            print(f"stylize overhead: engine job {status.state}: {status.message}")
            return
        t0 = time.perf_counter()
        mods["splats"].create_splat_object(bpy.context, task.result, "result")
        t_import = time.perf_counter() - t0
        tm = status.timings
        total = t_export + tm["submit"] + tm["fetch"] + t_import
        print(f"stylize overhead ({n:,} Gaussians): export {t_export:.3f} s, submit {tm['submit']:.3f} s, "
              f"fetch {tm['fetch']:.3f} s, import {t_import:.3f} s -> {total:.3f} s outside the optimization "
              f"(engine run incl. waiting: {tm.get('optimize', 0):.3f} s)")  # fmt: skip
    finally:
        engine.terminate()
        engine.wait(timeout=20)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--sh-degree", type=int, default=3)
    parser.add_argument("--no-engine", action="store_true", help="skip the Stylize overhead part")
    args = parser.parse_args()

    import bpy

    print(f"Blender {bpy.app.version_string}, Python {sys.version.split()[0]}")
    mods = install_addon()
    splatfile = importlib.import_module(f"{MODULE}.vendor.shared_protocol.splatfile")
    with tempfile.TemporaryDirectory() as d:
        bench_io(mods, splatfile, args.n, args.sh_degree, Path(d))
        if not args.no_engine:
            bench_stylize_overhead(mods, splatfile, args.n, args.sh_degree, Path(d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
