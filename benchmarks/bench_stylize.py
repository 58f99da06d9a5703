"""Acceptance figures of the default preset, measured (nothing hard-coded):

    .venv/bin/python benchmarks/bench_stylize.py                 # donut + Starry Night, once
    .venv/bin/python benchmarks/bench_stylize.py --repeat 3      # the same, three times (timing noise)
    .venv/bin/python benchmarks/bench_stylize.py --style all     # every style in ../shared/data/styles
    .venv/bin/python benchmarks/bench_stylize.py --scene all --style all --json rows.json   # the whole table
    .venv/bin/python benchmarks/bench_stylize.py --scene all --style all --preset weightfree --json base.json
    .venv/bin/python benchmarks/bench_stylize.py --scene all --style all --baseline base.json  # vs a baseline

Each run is the real command, `splatbrush stylize SCENE --style IMG -o OUT` with default settings, timed from
the outside (wall clock and CPU time of the process; the machine's load average is printed beside them, since
a shared machine slows everything down). Then, in this process, `engine.metrics.evaluate_scenes` renders
held-out orbit views of the original and the stylized scene and measures:
    style colour distance ratio   sliced W2 in CIELAB to the style's pixels, stylized / original  (<= 0.40)
    luminance SSIM                original vs stylized, over the object's pixels                  (> 0.6)
    learned style score           Magenta style-vector cosine, centred (metrics_style)            (> baseline)
    splat colours in range        DC colour in [0, 1] at the end of the job (report.json)          (100%)
    geometry bit-identical                                                                         (True)
and the wall time must be under 4 minutes. With --baseline (rows of an earlier run, e.g. of the old
weight-free preset) each row must also beat the baseline's style score on the same scene and style.
The per-step time of each part of the loop comes from the report.
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


SCENE_SUFFIXES = (".ply", ".spz", ".sog", ".splat", ".glb", ".gltf")


def scene_paths(name: str) -> list[Path]:
    """`name` in ../shared/data/scenes, or every scene there for "all" (files of a scene format and SOG
    folders; the garden points file has no Gaussians)."""
    root = DATA / "scenes"
    if name != "all":
        return [root / name]
    return sorted(
        p for p in root.iterdir() if p.suffix in SCENE_SUFFIXES or (p.is_dir() and (p / "meta.json").exists())
    )


def run_one(
    scene: Path, style: Path, out_dir: Path, eval_views: int, eval_size: int, extra: list[str]
) -> dict:
    import numpy as np
    from PIL import Image

    from engine.metrics import evaluate_scenes
    from engine.scene.io import load_scene

    out = out_dir / f"{scene.name.split('.')[0]}_{style.stem}.ply"
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
    m = evaluate_scenes(
        original, styled, style_img, views=eval_views, size=eval_size, up=report["settings"].get("up")
    )
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
        "preset": report["settings"].get("preset"),
        "colour_range": report.get("colour_range", {}),
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
        "in_range": row_in_range(row),
    }
    return row


def row_in_range(row: dict) -> bool:
    rng = row.get("colour_range") or {}
    return rng.get("out_of_range_end", 1) == 0


def compare_baseline(rows: list[dict], baseline: list[dict]) -> None:
    """Adds pass["style_vs_baseline"]: the row's learned style score beats the baseline's (same scene and
    style; rows without a baseline row are not judged)."""
    base = {(b["scene"], b["style"]): b for b in baseline}
    for r in rows:
        b = base.get((r["scene"], r["style"]))
        if b is None or "style_score_stylized" not in b["heldout"]:
            continue
        r["baseline_style_score"] = b["heldout"]["style_score_stylized"]
        r["pass"]["style_vs_baseline"] = r["heldout"]["style_score_stylized"] > r["baseline_style_score"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", default="donut.ply", help="scene file name in ../shared/data/scenes, or 'all'")
    ap.add_argument("--preset", help="preset of `splatbrush stylize` (default: its default)")
    ap.add_argument("--baseline", help="rows JSON of an earlier run to beat on the learned style score")
    ap.add_argument(
        "--table", help="print the rows of this JSON (compared with --baseline) instead of running anything"
    )
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
    scenes = scene_paths(args.scene)
    styles = sorted((DATA / "styles").glob("*.jpg"))
    if args.style != "all":
        styles = [s for s in styles if s.stem == args.style]
        if not styles:
            raise SystemExit(f"unknown style {args.style!r}; see {DATA / 'styles'}")
    baseline = json.loads(Path(args.baseline).read_text()) if args.baseline else None
    if args.table:
        return print_table(json.loads(Path(args.table).read_text()), baseline)
    extra = (["--preset", args.preset] if args.preset else []) + args.extra
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    print(f"{os.cpu_count()} CPUs; limits: {LIMITS}")
    print(
        "scene                style                  wall_s  cpu_s  load   ratio  ssim   score (base)    pass"
    )
    for scene in scenes:
        for style in styles:
            for _ in range(args.repeat):
                r = run_one(scene, style, out_dir, args.eval_views, args.eval_size, extra)
                if baseline is not None:
                    compare_baseline([r], baseline)
                rows.append(r)
                print_row(r)
                if args.json:  # after every row: a long run that is stopped keeps what it measured
                    Path(args.json).write_text(json.dumps(rows, indent=1))
    print_summary(rows)
    return 0 if all(all(r["pass"].values()) for r in rows) else 2


def print_table(rows: list[dict], baseline: list[dict] | None) -> int:
    if baseline is not None:
        compare_baseline(rows, baseline)
    for r in rows:
        print_row(r, per_step=False)
    print_summary(rows)
    return 0 if all(all(r["pass"].values()) for r in rows) else 2


def print_row(r: dict, per_step: bool = True) -> None:
    h = r["heldout"]
    score = h.get("style_score_stylized", float("nan"))
    base = r.get("baseline_style_score")
    base_s = f"({base:+.3f})" if base is not None else " " * 8
    failed = [k for k, ok in r["pass"].items() if not ok]
    print(
        f"{r['scene'][:20]:<20} {r['style'][:22]:<22} {r['wall_s']:>6.1f} {r['cpu_s']:>6.1f} "
        f"{r['load_avg_1min'][1]:>5.1f}  {h['style_distance_ratio']:.3f}  {h['ssim_luminance']:.3f}  "
        f"{score:+.3f} {base_s}  {'PASS' if not failed else 'FAIL ' + ','.join(failed)}",
        flush=True,
    )
    if per_step:
        print(f"    per step: {r['per_step_s']}  set-up: {r['setup_s']}  sheet: {r['contact_sheet']}")


def print_summary(rows: list[dict]) -> None:
    if not rows:
        return
    keys = sorted({k for r in rows for k in r["pass"]})
    counts = ", ".join(
        f"{k} {sum(r['pass'].get(k, False) for r in rows)}/{sum(k in r['pass'] for r in rows)}" for k in keys
    )
    walls = sorted(r["wall_s"] for r in rows)
    print(f"{len(rows)} runs; passed: {counts}; median wall {walls[len(walls) // 2]:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
