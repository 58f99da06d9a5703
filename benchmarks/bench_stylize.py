"""Acceptance figures of the weight-free default, measured (nothing hard-coded):

    .venv/bin/python benchmarks/bench_stylize.py                 # donut + Starry Night, once
    .venv/bin/python benchmarks/bench_stylize.py --repeat 3      # the same, three times (timing noise)
    .venv/bin/python benchmarks/bench_stylize.py --style all     # every style in ../shared/data/styles
    .venv/bin/python benchmarks/bench_stylize.py --style wave_crop --scene donut.ply --out /tmp/bench

Each run is the real command, `splatbrush stylize SCENE --style IMG -o OUT` with default settings, timed from
the outside (wall clock and CPU time of the process; the machine's load average is printed beside them, since
a shared machine slows everything down). Then, in this process, `engine.metrics.evaluate_scenes` renders
held-out orbit views of the original and the stylized scene and measures:
    style colour distance ratio   sliced W2 in CIELAB to the style's pixels, stylized / original  (<= 0.40)
    luminance SSIM                original vs stylized, over the object's pixels                  (> 0.6)
    geometry bit-identical                                                                         (True)
and the wall time must be under 4 minutes. The per-step time of each part of the loop comes from the report.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
LIMITS = {"wall_s": 240.0, "style_distance_ratio": 0.40, "ssim_luminance": 0.6}


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_one(
    scene: Path, style: Path, out_dir: Path, eval_views: int, eval_size: int, extra: list[str]
) -> dict:
    import numpy as np
    from PIL import Image

    from engine.metrics import evaluate_scenes
    from engine.scene.io import load_scene

    out = out_dir / f"{scene.stem}_{style.stem}.ply"
    cmd = [
        sys.executable,
        "-m",
        "engine",
        "stylize",
        str(scene),
        "--style",
        str(style),
        "-o",
        str(out),
        "--quiet",
    ]
    cmd += extra
    load_before = os.getloadavg()[0]
    cpu0, t0 = _cpu_children(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    cpu = _cpu_children() - cpu0
    load_after = os.getloadavg()[0]
    if proc.returncode != 0:
        raise RuntimeError(f"stylize failed ({proc.returncode}): {proc.stderr[-2000:]}")
    report = json.loads(Path(f"{out.with_suffix('')}.report.json").read_text())
    original, styled = load_scene(scene), load_scene(out)
    style_img = np.asarray(Image.open(style).convert("RGB"))
    t1 = time.perf_counter()
    m = evaluate_scenes(original, styled, style_img, views=eval_views, size=eval_size, with_models=False)
    eval_s = time.perf_counter() - t1
    timings = report["timings"]
    steps = max(1, report["steps_done"])
    per_step = {
        k: round(v["total_s"] / steps, 4)
        for k, v in timings.items()
        if k.startswith("guidance:") or k in ("render", "backward_step")
    }
    row = {
        "scene": scene.name,
        "style": style.stem,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "load_avg_1min": [round(load_before, 2), round(load_after, 2)],
        "steps": report["steps_done"],
        "size": report["settings"]["size"],
        "setup_s": {k: timings[k]["total_s"] for k in ("prepare_views", "build_guidance") if k in timings},
        "per_step_s": per_step,
        "train_view_metrics": report.get("metrics", {}),
        "heldout": m,
        "eval_s": round(eval_s, 1),
        "contact_sheet": f"{out.with_suffix('')}.contact.png",
    }
    row["pass"] = {
        "time": wall < LIMITS["wall_s"],
        "colour": m["style_distance_ratio"] <= LIMITS["style_distance_ratio"],
        "ssim": m["ssim_luminance"] > LIMITS["ssim_luminance"],
        "geometry": bool(m["geometry_identical"]),
    }
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", default="donut.ply", help="scene file name in ../shared/data/scenes")
    ap.add_argument("--style", default="vg_starry_night", help="style name (file stem) or 'all'")
    ap.add_argument("--repeat", type=int, default=1, help="runs per style (timing noise)")
    ap.add_argument("--eval-views", type=int, default=8, help="held-out orbit views for the metrics")
    ap.add_argument("--eval-size", type=int, default=192, help="render size of the held-out views")
    ap.add_argument("--out", default="/tmp/splatbrush_bench", help="output folder")
    ap.add_argument("--json", help="write all rows to this JSON file")
    ap.add_argument("extra", nargs="*", help="extra arguments for `splatbrush stylize` (after --)")
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"no shared data at {DATA}; nothing to measure", file=sys.stderr)
        return 1
    scene = DATA / "scenes" / args.scene
    styles = sorted((DATA / "styles").glob("*.jpg"))
    if args.style != "all":
        styles = [s for s in styles if s.stem == args.style]
        if not styles:
            raise SystemExit(f"unknown style {args.style!r}; see {DATA / 'styles'}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"{os.cpu_count()} CPUs; limits: {LIMITS}")
    header = "style                  wall_s  cpu_s  load    ratio  ssim   geom  consist(orig->styl)  pass"
    print(header)
    for style in styles:
        for _ in range(args.repeat):
            r = run_one(scene, style, out_dir, args.eval_views, args.eval_size, args.extra)
            rows.append(r)
            h = r["heldout"]
            print(
                f"{r['style']:<22} {r['wall_s']:>6.1f} {r['cpu_s']:>6.1f} {r['load_avg_1min'][1]:>5.1f}  "
                f"{h['style_distance_ratio']:.3f}  {h['ssim_luminance']:.3f}  "
                f"{str(h['geometry_identical']):<5} "
                f"{h['consistency_short_original']:.4f}->{h['consistency_short_stylized']:.4f}  "
                f"{'PASS' if all(r['pass'].values()) else 'FAIL ' + str(r['pass'])}",
                flush=True,
            )
            print(f"    per step: {r['per_step_s']}  set-up: {r['setup_s']}  sheet: {r['contact_sheet']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0 if all(all(r["pass"].values()) for r in rows) else 2


if __name__ == "__main__":
    sys.exit(main())
