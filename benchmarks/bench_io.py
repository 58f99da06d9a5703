"""Scene file I/O speed: a generated 1M-Gaussian INRIA .ply (SH degree 3, with normals: 62 float32 a
Gaussian, 248 MB) read and written, plus every real file in ../shared/data/scenes.

    .venv/bin/python benchmarks/bench_io.py [--n 1000000] [--repeats 5]

Prints the median of `repeats` runs (file in the page cache, as when a scene is re-opened), the peak of
numpy/Python allocations during one read and one write (tracemalloc), and the process peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from shared_protocol.splatfile import GAUSSIAN_FIELDS as FIELDS
from shared_protocol.splatfile import SplatArrays, detect_format, read_splats, write_splats

SHARED_SCENES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scenes"


def make_arrays(n: int, deg: int = 3, seed: int = 0) -> SplatArrays:
    rng = np.random.default_rng(seed)
    k = (deg + 1) ** 2
    f = np.float32
    return SplatArrays(
        means=rng.standard_normal((n, 3), f),
        quats=rng.standard_normal((n, 4), f),
        log_scales=rng.standard_normal((n, 3), f) - 4,
        opacity_logits=rng.standard_normal(n, f),
        sh=rng.standard_normal((n, k, 3), f) * 0.3,
        extra={c: rng.standard_normal(n, f) for c in ("nx", "ny", "nz")},
    )


def timed(fn, repeats: int) -> tuple[float, list[float], float]:
    """(median wall seconds, all wall seconds, median CPU seconds of this process)."""
    times, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(times), times, statistics.median(cpu)


def peak_alloc_mb(fn) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")

    with tempfile.TemporaryDirectory() as tmp:
        big, out = Path(tmp) / "big.ply", Path(tmp) / "out.ply"
        arrays = make_arrays(args.n)
        write_splats(arrays, big)
        size_mb = big.stat().st_size / 2**20
        read_wall, read_all, read_cpu = timed(lambda: read_splats(big), args.repeats)
        write_wall, write_all, write_cpu = timed(lambda: write_splats(arrays, out), args.repeats)
        back = read_splats(big)
        exact = all(getattr(back, f).tobytes() == getattr(arrays, f).tobytes() for f in FIELDS)
        exact &= all(back.extra[c].tobytes() == arrays.extra[c].tobytes() for c in arrays.extra)
        read_peak = peak_alloc_mb(lambda: read_splats(big))
        write_peak = peak_alloc_mb(lambda: write_splats(arrays, out))
        print(f"{args.n:,} Gaussians, SH 3 + normals, {size_mb:.0f} MiB .ply (median of {args.repeats} runs)")
        print(f"  read   wall {ms(read_wall)}  cpu {ms(read_cpu)}   runs {', '.join(map(ms, read_all))}")
        print(f"  write  wall {ms(write_wall)}  cpu {ms(write_cpu)}   runs {', '.join(map(ms, write_all))}")
        print(f"  peak allocations: read {read_peak:.0f} MiB, write {write_peak:.0f} MiB")
        print(f"  write -> read bit-exact: {exact}")

        deg0 = SplatArrays(
            arrays.means, arrays.quats, arrays.log_scales, arrays.opacity_logits, arrays.sh[:, :1]
        )
        small = Path(tmp) / "deg0.ply"
        write_splats(deg0, small)
        wall, _, cpu = timed(lambda: read_splats(small), args.repeats)
        mib = small.stat().st_size / 2**20
        print(f"  SH 0 without normals ({mib:.0f} MiB): read wall {ms(wall)} cpu {ms(cpu)}")
        splat = Path(tmp) / "big.splat"
        write_splats(deg0, splat)
        wall, _, cpu = timed(lambda: read_splats(splat), args.repeats)
        wall_w, _, cpu_w = timed(lambda: write_splats(deg0, Path(tmp) / "big2.splat"), args.repeats)
        print(f"  .splat: read wall {ms(wall)} cpu {ms(cpu)}; write wall {ms(wall_w)} cpu {ms(cpu_w)}")

    if SHARED_SCENES.is_dir():
        print(f"real files in {SHARED_SCENES}:")
        for p in sorted(SHARED_SCENES.glob("*.ply")):
            wall, _, cpu = timed(lambda p=p: read_splats(p), args.repeats)
            n = read_splats(p).num_gaussians
            print(
                f"  {p.name:24s} {detect_format(p):15s} {n:>8,} Gaussians  read wall {ms(wall)} cpu {ms(cpu)}"
            )
    else:
        print(f"(no real files: {SHARED_SCENES} not found)")
    print(f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
