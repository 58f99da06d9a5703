"""How a stylization scales with the number of Gaussians: wall time, peak RSS and per-stage timings.

    .venv/bin/python benchmarks/bench_scale.py                          # 50k, 150k, 600k, 1.2M
    .venv/bin/python benchmarks/bench_scale.py --sizes 50k 150k 600k 1.2M 2.4M
    .venv/bin/python benchmarks/bench_scale.py --strokes-only            # stroke cells alone, up to 2.4M
    .venv/bin/python benchmarks/bench_scale.py --sizes 600k --profile    # cProfile of one run (top 30)

Scenes: replicas of a real scene (../shared/data/scenes/donut.ply, 45,624 Gaussians) tiled on a square grid
in the x-z plane (the orbit's default up is -y) with every Gaussian jittered by 1.5% of the donut's size, so
the copies are not exact duplicates; a synthetic torus of Gaussians stands in when ../shared is absent.
Each size is the real command (`python -m engine stylize SCENE --style IMG -o OUT`, default preset) in its own
subprocess, one at a time; its peak RSS comes from os.wait4 (ru_maxrss of that child only). The per-stage
timings are the report's "timings". Targets (issue 9): 1.2M in <= 180 s and <= 8 GB, 2.4M in <= 16 GB, time
at most linear in N (the s/M-Gaussians column should not grow).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
DONUT = DATA / "scenes" / "donut.ply"
STYLE = DATA / "styles" / "vg_starry_night.jpg"


def _parse_size(s: str) -> int:
    s = s.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(s[-1], 1)
    return int(round(float(s.rstrip("km")) * mult))


def _synthetic_base(n: int = 45_000, seed: int = 0):
    """A torus of Gaussians (radius 0.07, tube 0.03; about the donut's size), random colours."""
    from shared_protocol.splatfile.arrays import SplatArrays

    rng = np.random.default_rng(seed)
    u, v = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, n)
    r = 0.07 + 0.03 * np.cos(v)
    means = np.stack([r * np.cos(u), r * np.sin(u), 0.03 * np.sin(v)], 1)
    return SplatArrays(
        means=means.astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        log_scales=np.full((n, 3), math.log(0.003), np.float32),
        opacity_logits=np.full(n, 2.0, np.float32),
        sh=(rng.uniform(-1.5, 1.5, (n, 1, 3))).astype(np.float32),
    )


def base_scene():
    """(SplatArrays of the scene to replicate, its name)."""
    if DONUT.exists():
        from shared_protocol.splatfile import read_splats

        a = read_splats(DONUT)
        a.extra = {}
        return a, "donut"
    return _synthetic_base(), "synthetic torus"


def replica(base, n: int, seed: int = 0):
    """`n` Gaussians: copies of `base` on a square grid (x-z plane), jittered; the last copy partial."""
    from shared_protocol.splatfile.arrays import SplatArrays

    m = base.num_gaussians
    copies = math.ceil(n / m)
    side = math.ceil(math.sqrt(copies))
    lo, hi = base.means.min(0), base.means.max(0)
    extent = float((hi - lo).max())
    spacing = 1.3 * extent
    rng = np.random.default_rng(seed)
    idx = np.arange(n) % m  # [n] Gaussian of the base
    copy = np.arange(n) // m  # [n] which copy
    offset = np.stack([(copy % side) * spacing, np.zeros(n), (copy // side) * spacing], 1)
    means = base.means[idx] + offset + rng.normal(scale=0.015 * extent, size=(n, 3))
    return SplatArrays(
        means=means.astype(np.float32),
        quats=base.quats[idx],
        log_scales=base.log_scales[idx],
        opacity_logits=base.opacity_logits[idx],
        sh=base.sh[idx],
    )


def _style_path(tmp: Path) -> Path:
    if STYLE.exists():
        return STYLE
    from PIL import Image

    from engine.demo import demo_style_image

    p = tmp / "style.png"
    Image.fromarray(demo_style_image()).save(p)
    return p


def run_size(base, n: int, tmp: Path, style: Path, extra: list[str], profile: bool) -> dict:
    from shared_protocol.splatfile import write_splats

    scene = tmp / f"replica_{n}.ply"
    write_splats(replica(base, n), scene)
    out = tmp / f"out_{n}.ply"
    cmd = [sys.executable]
    if profile:
        cmd += ["-m", "cProfile", "-o", str(tmp / f"prof_{n}.out")]
    cmd += ["-m", "engine", "stylize", str(scene), "--style", str(style), "-o", str(out), "--quiet", *extra]
    log = tmp / f"log_{n}.txt"
    t0 = time.perf_counter()
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    scene.unlink(missing_ok=True)
    row = {"n": n, "wall_s": wall, "peak_rss_gb": usage.ru_maxrss / 1024**2, "rc": proc.returncode}
    if proc.returncode != 0:
        row["error"] = log.read_text(errors="replace")[-2000:]
        return row
    report_path = out.with_suffix(".report.json")
    report = json.loads(report_path.read_text())
    row["timings"] = {k: v["total_s"] for k, v in report.get("timings", {}).items()}
    row["server_estimate_gb"] = _server_estimate(report["settings"], n, int(base.sh.shape[1])) / 1e9
    row["metrics"] = report.get("metrics", {})
    for p in tmp.glob(f"out_{n}*"):
        p.unlink()
    if profile:
        import pstats

        pstats.Stats(str(tmp / f"prof_{n}.out")).sort_stats("cumulative").print_stats(30)
    return row


def _server_estimate(settings: dict, n: int, sh_coeffs: int) -> int:
    """The memory the engine server would reserve for this job at submit (engine/server/estimate.py)."""
    from engine.server.estimate import estimate_job

    s = settings
    args = (s["steps"], s["size"], s["views"], s["views_per_step"], n, sh_coeffs, None, s["device"])
    return estimate_job(*args).memory_bytes


def strokes_only(base, sizes: list[int]) -> None:
    import torch

    from engine.scene.io import scene_from_arrays
    from engine.stylize.config import StylizeConfig
    from engine.stylize.strokes import build_cells

    cfg = StylizeConfig.from_preset("fast")
    print(f"stroke cells alone (stroke_size {cfg.stroke_size}, aspect {cfg.stroke_aspect})")
    print(f"{'N':>10} {'time_s':>8} {'s/M':>7} {'cells':>8} {'median size':>12} {'fallback':>9}")
    for n in sizes:
        sc = scene_from_arrays(replica(base, n))
        t0 = time.perf_counter()
        cells = build_cells(sc, cfg.stroke_size, cfg.stroke_aspect, 0)
        dt = time.perf_counter() - t0
        med = float(torch.median(cells.sizes().double()))
        print(f"{n:>10} {dt:>8.2f} {dt / n * 1e6:>7.2f} {cells.count:>8} {med:>12.0f} {cells.exhaustive:>9}")
        del sc, cells


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["50k", "150k", "600k", "1.2M"])
    ap.add_argument("--strokes-only", action="store_true", help="time the stroke cells alone (in process)")
    ap.add_argument("--profile", action="store_true", help="cProfile each run, print the top 30")
    ap.add_argument("--tmp", type=Path, default=None, help="folder for the replica and outputs")
    ap.add_argument("extra", nargs="*", help="extra arguments for `splatbrush stylize` (after --)")
    args = ap.parse_args()
    sizes = [_parse_size(s) for s in args.sizes]
    base, name = base_scene()
    print(f"replicas of {name} ({base.num_gaussians} Gaussians); load average {os.getloadavg()[0]:.1f}")
    if args.strokes_only:
        strokes_only(
            base,
            sizes
            if args.sizes != ap.get_default("sizes")
            else [50_000, 150_000, 600_000, 1_200_000, 2_400_000],
        )
        return 0
    with tempfile.TemporaryDirectory(dir=args.tmp) as d:
        tmp = Path(d)
        style = _style_path(tmp)
        rows = []
        for n in sizes:
            row = run_size(base, n, tmp, style, args.extra, args.profile)
            rows.append(row)
            print(
                f"N={n:>9}: wall {row['wall_s']:7.1f} s ({row['wall_s'] / n * 1e6:6.1f} s/M), peak RSS "
                f"{row['peak_rss_gb']:5.2f} GB, rc {row['rc']}, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            if "error" in row:
                print(row["error"])
                continue
            print(f"   the server's estimate at submit: {row['server_estimate_gb']:.2f} GB")
            stages = sorted(row["timings"].items(), key=lambda kv: -kv[1])
            print("   " + ", ".join(f"{k} {v:.1f}" for k, v in stages))
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
