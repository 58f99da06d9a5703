"""CPU forward+backward benchmark of the torch rasterizer (issue 2).

    .venv/bin/python benchmarks/bench_render.py [--n 100000] [--sizes 256 512] [--runs 5] [--threads 2]

The scene is donut.ply (../shared/data) resampled to --n Gaussians (positions jittered, scales shrunk so that
the surface coverage stays like the original's), or a random blob when the data is absent. Each
configuration runs in its own subprocess so that its peak RSS is its own. The loss is a random weighted sum
of image, alpha and depth, so the backward pass touches every output.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DONUT = REPO.parent / "shared" / "data" / "scenes" / "donut.ply"


def make_scene(n: int, seed: int = 0):
    """A realistic synthetic scene of n Gaussians, float32."""
    from engine.scene import GaussianScene

    g = torch.Generator().manual_seed(seed)
    if DONUT.is_file():
        from engine.scene.io import load_scene

        base = load_scene(DONUT)
        idx = torch.randint(0, base.num_gaussians, (n,), generator=g)
        shrink = min(1.0, (base.num_gaussians / n) ** 0.5)
        spread = (base.means.max(0).values - base.means.min(0).values).norm().item()
        return GaussianScene(
            means=base.means[idx] + torch.randn(n, 3, generator=g) * 0.003 * spread,
            quats=base.quats[idx],
            log_scales=base.log_scales[idx] + float(np.log(shrink)),
            opacity_logits=base.opacity_logits[idx],
            sh=base.sh[idx],
        )
    return GaussianScene(
        means=torch.randn(n, 3, generator=g) * 0.05,
        quats=torch.randn(n, 4, generator=g),
        log_scales=torch.log(torch.rand(n, 3, generator=g) * 0.004 + 0.0005),
        opacity_logits=torch.randn(n, generator=g) * 2,
        sh=torch.randn(n, 1, 3, generator=g) * 0.5,
    )


def make_camera(scene, size: int):
    from engine.cameras import Camera

    lo, hi = scene.means.min(0).values.numpy(), scene.means.max(0).values.numpy()
    centre, radius = (lo + hi) / 2, float(np.linalg.norm(hi - lo)) / 2
    eye = centre + radius * 1.8 * np.array([np.sin(0.7), -0.5, np.cos(0.7)])
    return Camera.look_at(eye, centre, np.array([0.0, -1.0, 0.0]), 45.0, size, size)


def run_one(backend: str, n: int, size: int, runs: int, threads: int) -> dict:
    from engine.render import render

    torch.set_num_threads(threads)
    scene = make_scene(n)
    camera = make_camera(scene, size)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # imports + scene, before rendering
    leaves = {
        k: getattr(scene, k).clone().requires_grad_()
        for k in ("means", "quats", "log_scales", "opacity_logits", "sh")
    }
    s = type(scene)(**leaves)
    g = torch.Generator().manual_seed(1)
    wi, wa, wd = (torch.rand(shape, generator=g) for shape in ((size, size, 3), (size, size), (size, size)))
    fwd, total, cpu = [], [], []
    for _ in range(runs + 1):  # first run is warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        out = render(s, camera, (1.0, 1.0, 1.0), backend=backend)
        t1 = time.perf_counter()
        loss = (out.image * wi).sum() + (out.alpha * wa).sum() + (out.depth * wd).sum() * 0.1
        loss.backward()
        t2 = time.perf_counter()
        cpu.append(time.process_time() - c0)
        fwd.append(t1 - t0)
        total.append(t2 - t0)
    return {
        "backend": backend,
        "n": n,
        "size": size,
        "forward_s": statistics.median(fwd[1:]),
        "fwd_bwd_s": statistics.median(total[1:]),
        "fwd_bwd_cpu_s": statistics.median(cpu[1:]),
        "threads": threads,
        "base_rss_mb": base_rss,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "coverage": out.alpha.mean().item(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backends", nargs="+", default=["torch"])
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: run one config here
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.backends[0], args.n, args.sizes[0], args.runs, args.threads)))
        return 0
    results = []
    for size in args.sizes:
        for backend in args.backends:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                "--n",
                str(args.n),
                "--sizes",
                str(size),
                "--runs",
                str(args.runs),
                "--threads",
                str(args.threads),
                "--backends",
                backend,
            ]
            res = json.loads(
                subprocess.run(cmd, check=True, capture_output=True, text=True)
                .stdout.strip()
                .splitlines()[-1]
            )
            results.append(res)
            print(
                f"{backend:>10} N={res['n']:>7} {size}x{size} threads={args.threads}: "
                f"forward {res['forward_s']:.3f} s, "
                f"forward+backward {res['fwd_bwd_s']:.3f} s (CPU {res['fwd_bwd_cpu_s']:.3f} s; medians of "
                f"{args.runs}), peak RSS {res['peak_rss_mb']:.0f} MB (before rendering "
                f"{res['base_rss_mb']:.0f} MB), coverage {res['coverage']:.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
