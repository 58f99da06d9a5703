"""`splatbrush info FILE [--json]`: what a splat file holds (count, SH degree, bounds, opacity and scales)."""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def format_name(fmt: str) -> str:
    """The registry's human name of a format ("spz" -> "Niantic .spz")."""
    from shared_protocol.splatfile import SPLAT_FORMATS

    return SPLAT_FORMATS[fmt].description if fmt in SPLAT_FORMATS else fmt


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info",
        help="describe a splat file (.ply, .compressed.ply, .splat, .spz, .sog, .glb/.gltf)",
        description="Print the Gaussian count, SH degree, bounding box (min/max and 1-99 percentile), "
        "opacity and scale statistics of a splat file.",
    )
    p.add_argument("file", help="a splat file (or an unbundled SOG folder / its meta.json)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


def _stats(a: np.ndarray) -> dict[str, float]:
    lo, p1, med, p99, hi = np.percentile(a, [0, 1, 50, 99, 100])
    return {
        "min": float(lo),
        "p1": float(p1),
        "median": float(med),
        "mean": float(a.mean(dtype=np.float64)),
        "p99": float(p99),
        "max": float(hi),
    }


def describe(path: str) -> dict:
    """Everything `info` prints, as plain JSON-able values."""
    from shared_protocol.splatfile import detect_format, read_splats

    fmt = detect_format(path)
    t0 = time.perf_counter()
    arrays = read_splats(path)
    read_s = time.perf_counter() - t0
    means = arrays.means.astype(np.float64)
    opacity = 1.0 / (1.0 + np.exp(-arrays.opacity_logits.astype(np.float64)))
    scales = np.exp(arrays.log_scales.astype(np.float64))
    qnorm = np.linalg.norm(arrays.quats.astype(np.float64), axis=1)
    p1, p99 = np.percentile(means, [1, 99], axis=0)
    k = arrays.sh.shape[1]
    return {
        "file": os.fspath(path),
        "format": fmt,
        "file_bytes": _file_bytes(path),
        "antialiased": bool(arrays.meta.get("antialiased", False)),
        "read_seconds": round(read_s, 4),
        "num_gaussians": arrays.num_gaussians,
        "sh_degree": arrays.sh_degree,
        "sh_coeffs_per_channel": k,
        "extra_properties": list(arrays.extra),
        "bbox": {
            "min": means.min(axis=0).tolist(),
            "max": means.max(axis=0).tolist(),
            "p1": p1.tolist(),
            "p99": p99.tolist(),
            "extent_p1_p99": (p99 - p1).tolist(),
            "center_p1_p99": ((p1 + p99) / 2).tolist(),
        },
        "opacity": {
            **_stats(opacity),
            "below_1_255": int(np.count_nonzero(opacity < 1.0 / 255.0)),
            "above_0_99": int(np.count_nonzero(opacity > 0.99)),
        },
        "scale": _stats(scales.reshape(-1)),
        "scale_largest_axis": _stats(scales.max(axis=1)),
        "quat_norm": {"min": float(qnorm.min()), "max": float(qnorm.max())},
        "base_color_mean": (0.28209479177387814 * arrays.sh[:, 0].astype(np.float64) + 0.5)
        .clip(0, 1)
        .mean(axis=0)
        .tolist(),
    }


def _file_bytes(path: str) -> int:
    """Bytes of a file, or of an unbundled SOG folder / meta.json with its images."""
    p = os.fspath(path)
    if os.path.isdir(p) or os.path.basename(p).lower() == "meta.json":
        folder = p if os.path.isdir(p) else os.path.dirname(os.path.abspath(p))
        names = [n for n in os.listdir(folder) if n == "meta.json" or n.endswith(".webp")]
        return sum(os.path.getsize(os.path.join(folder, n)) for n in names)
    return os.path.getsize(p)


def _fmt3(v: list[float]) -> str:
    return "  ".join(f"{x:>11.5g}" for x in v)


def _fmt_stats(s: dict[str, float]) -> str:
    return "  ".join(f"{k} {s[k]:.4g}" for k in ("min", "p1", "median", "mean", "p99", "max"))


def render_text(d: dict) -> str:
    b, o = d["bbox"], d["opacity"]
    n = d["num_gaussians"]
    lines = [
        f"file         {d['file']}",
        f"format       {format_name(d['format'])}, {d['file_bytes'] / 2**20:.2f} MiB, "
        f"read in {d['read_seconds'] * 1000:.0f} ms",
        f"gaussians    {n:,}",
        f"sh degree    {d['sh_degree']} ({d['sh_coeffs_per_channel']} SH coefficients per channel)",
        f"extra        {', '.join(d['extra_properties']) or '(none)'}",
        f"bbox min     {_fmt3(b['min'])}",
        f"bbox max     {_fmt3(b['max'])}",
        f"bbox p1      {_fmt3(b['p1'])}",
        f"bbox p99     {_fmt3(b['p99'])}",
        f"extent p1-99 {_fmt3(b['extent_p1_p99'])}",
        f"opacity      {_fmt_stats(o)}",
        f"             {o['below_1_255']:,} ({100 * o['below_1_255'] / n:.1f}%) below 1/255, "
        f"{o['above_0_99']:,} ({100 * o['above_0_99'] / n:.1f}%) above 0.99",
        f"scale        {_fmt_stats(d['scale'])}",
        f"largest axis {_fmt_stats(d['scale_largest_axis'])}",
        f"quat norm    min {d['quat_norm']['min']:.4g}  max {d['quat_norm']['max']:.4g}",
        f"mean colour  {_fmt3(d['base_color_mean'])}",
    ]
    if "filter_3D" in d["extra_properties"]:
        lines.append(
            "note         Mip-Splatting filter_3D is not fused: `splatbrush convert --fuse-filter-3d`"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    info = describe(args.file)
    print(json.dumps(info, indent=2) if args.json else render_text(info))
    return 0
