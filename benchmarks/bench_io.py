"""Scene file I/O speed: 1M Gaussians (SH degree 3) written and read in every format, beside `np.fromfile` of
the same file (the floor: bytes from the page cache into one array); then the INRIA .ply fast path in detail
(a 1M-Gaussian SH-3 file with normals, 62 float32 a Gaussian, 248 MB), and every real file in
../shared/data/scenes.

    .venv/bin/python benchmarks/bench_io.py [--n 1000000] [--repeats 3] [--formats ply,spz3,...] [--keep DIR]

Prints the median of `repeats` runs (file in the page cache, as when a scene is re-opened), the peak of
numpy/Python allocations during one read and one write (tracemalloc), and the process peak RSS. `--keep DIR`
leaves the generated files there (e.g. for a peer reader such as gsply).
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
from shared_protocol.splatfile.spz import read_spz

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


# name -> (file name, writer options, what the format keeps)
FORMATS = {
    "ply": ("g.ply", {}, "float32, lossless"),
    "compressed_ply": ("g.compressed.ply", {}, "chunks of 256, 11/10/11 bits, SH 8 bits"),
    "spz2": ("g2.spz", {"version": 2}, "gzip"),
    "spz3": ("g3.spz", {"version": 3}, "gzip"),
    "spz4": ("g4.spz", {"version": 4}, "zstd streams"),
    "sog": ("g.sog", {}, "WebP zip, SH palette 65,536"),
    "glb": ("g.glb", {}, "float32, lossless"),
    "glb_std": ("g_std.glb", {"exact": False}, "float32, standard attributes only"),
    "splat": ("g.splat", {}, "SH 0 only"),
}


def format_table(arrays: SplatArrays, folder: Path, names: list[str], repeats: int) -> None:
    """Write and read `arrays` in each format: median wall time of `repeats`, size, np.fromfile beside."""
    n = arrays.num_gaussians
    deg0 = SplatArrays(arrays.means, arrays.quats, arrays.log_scales, arrays.opacity_logits, arrays.sh[:, :1])
    print(f"{n:,} Gaussians, SH degree 3 (.splat: 0), median of {repeats} runs, wall time")
    print(f"  {'format':15s} {'write':>9s} {'read':>9s} {'fromfile':>9s} {'MiB':>7s}  B/Gauss  notes")
    for name in names:
        file, options, notes = FORMATS[name]
        path = folder / file
        data = deg0 if name == "splat" else arrays
        write, _, _ = timed(lambda d=data, p=path, o=options: write_splats(d, p, **o), repeats)
        read, _, _ = timed(lambda p=path: read_splats(p), repeats)
        raw, _, _ = timed(lambda p=path: np.fromfile(p, np.uint8), repeats)
        size = path.stat().st_size
        back = read_splats(path)
        assert back.num_gaussians == n, (name, back.num_gaussians)
        print(
            f"  {name:15s} {ms(write):>9s} {ms(read):>9s} {ms(raw):>9s} {size / 2**20:7.1f}  "
            f"{size / n:7.1f}  {notes}"
        )


def peer_gsply(folder: Path, names: list[str], repeats: int) -> None:
    """gsply (if importable) reading and writing the same files: a peer's speed, and its decoded values
    beside ours (an independent reader of the files we wrote)."""
    try:
        import gsply
    except ImportError:
        print("(gsply not installed: no peer timings; pip install gsply)")
        return
    print(f"peer: gsply {gsply.__version__} on the same files (median of {repeats}), |ours - gsply| max")
    for name, read, write in (("ply", gsply.plyread, gsply.plywrite), ("spz3", gsply.read_spz, None)):
        if name not in names:
            continue
        path = folder / FORMATS[name][0]
        theirs = read(path)  # the first call compiles gsply's numba kernels: not timed
        wall, _, _ = timed(lambda p=path, r=read: r(p), repeats)
        # gsply keeps the .spz file's axes (RUB); ours are converted to RDF unless asked not to
        ours = read_spz(path, axes="file") if name.startswith("spz") else read_splats(path)
        line = f"  {name:6s} read {ms(wall):>8s}"
        if write is not None:
            out = folder / f"peer_{path.name}"
            write(out, theirs)
            wall_w, _, _ = timed(lambda o=out, d=theirs, w=write: w(o, d), repeats)
            line += f"  write {ms(wall_w):>8s}"
        diffs = {"means": (ours.means, theirs.means), "sh0": (ours.sh[:, 0], theirs.sh0)}
        line += "  " + ", ".join(f"{k} {np.abs(np.asarray(b) - a).max():.3g}" for k, (a, b) in diffs.items())
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--formats", default=",".join(FORMATS), help="comma-separated, from " + ", ".join(FORMATS)
    )
    ap.add_argument("--keep", type=Path, help="write the per-format files into this folder and keep them")
    args = ap.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    names = [f for f in args.formats.split(",") if f]
    unknown = sorted(set(names) - set(FORMATS))
    if unknown:
        ap.error(f"unknown formats {unknown}: choose from {', '.join(FORMATS)}")
    if names:
        arrays = make_arrays(args.n)
        arrays.extra.clear()  # only .ply keeps normals: compare the formats on the same content
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            format_table(arrays, args.keep, names, args.repeats)
            peer_gsply(args.keep, names, args.repeats)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                format_table(arrays, Path(tmp), names, args.repeats)
                peer_gsply(Path(tmp), names, args.repeats)
        del arrays

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
        for p in sorted(SHARED_SCENES.iterdir()):
            if p.suffix in (".npz", "") and not (p / "meta.json").is_file() or p.name.startswith("LICENSE"):
                continue
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
