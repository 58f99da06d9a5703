"""`splatbrush convert IN OUT`: convert between splat file formats (any readable -> any writable).

Formats come from `shared_protocol.splatfile.registry`: .ply (INRIA; also ASCII/big-endian), .compressed.ply
(PlayCanvas), .splat, .spz (Niantic v1-4 read, v2-4 write), .sog / meta.json (PlayCanvas SOG), .glb / .gltf
(KHR_gaussian_splatting). IN's format is sniffed from its bytes, OUT's chosen by its extension. What a lossy
output drops or quantises is said on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert a splat file between .ply, .compressed.ply, .splat, .spz, .sog and .glb/.gltf",
        description="Convert IN to OUT; IN's format is read from its bytes, OUT's from its extension "
        "(.ply, .compressed.ply, .splat, .spz, .sog, meta.json for an unbundled SOG, .glb, .gltf).",
    )
    p.add_argument("input", metavar="IN", help="a splat file (or an unbundled SOG folder / meta.json)")
    p.add_argument("output", metavar="OUT", help="the file to write; its extension picks the format")
    p.add_argument(
        "--sh-degree",
        type=int,
        choices=(0, 1, 2, 3),
        default=None,
        help="truncate (or zero-pad) the SH bands to this degree (default: keep)",
    )
    p.add_argument(
        "--fuse-filter-3d",
        action="store_true",
        help="bake a Mip-Splatting filter_3D property into scales and opacities (then drop it)",
    )
    p.add_argument("--drop-extra", action="store_true", help="do not copy extra properties (normals, ...)")
    p.add_argument("--spz-version", type=int, default=None, help=".spz output version: 2, 3 (default) or 4")
    p.add_argument(
        "--keep-order",
        action="store_true",
        help=".compressed.ply output: keep the Gaussian order (default: z-curve order, tighter chunks)",
    )
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(func=run)


def with_sh_degree(sh: np.ndarray, degree: int) -> np.ndarray:  # [N, K, 3] -> [N, (degree+1)^2, 3]
    k = (degree + 1) ** 2
    if sh.shape[1] >= k:
        return np.ascontiguousarray(sh[:, :k])
    out = np.zeros((sh.shape[0], k, 3), sh.dtype)
    out[:, : sh.shape[1]] = sh
    return out


def _writer_options(args: argparse.Namespace, fmt: str) -> dict:
    options = {}
    if args.spz_version is not None:
        if fmt != "spz":
            raise ValueError(f"--spz-version applies to .spz output, not {args.output}")
        options["version"] = args.spz_version
    if args.keep_order:
        if fmt != "compressed_ply":
            raise ValueError(f"--keep-order applies to .compressed.ply output, not {args.output}")
        options["morton"] = False
    return options


def run(args: argparse.Namespace) -> int:
    from shared_protocol.splatfile import SPLAT_FORMATS, fuse_filter_3d, read_splats, write_splats
    from shared_protocol.splatfile.io import output_format

    out_fmt = output_format(args.output)  # fail on a bad extension before reading
    try:
        options = _writer_options(args, out_fmt)
    except ValueError as e:
        print(f"splatbrush convert: {e}", file=sys.stderr)
        return 2
    if os.path.exists(args.output) and not args.force:
        print(f"splatbrush convert: {args.output} exists; pass --force to overwrite it", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    arrays = read_splats(args.input)
    t1 = time.perf_counter()
    if args.fuse_filter_3d:
        if "filter_3D" not in arrays.extra:
            print(f"splatbrush convert: {args.input} has no filter_3D property to fuse", file=sys.stderr)
            return 1
        arrays = fuse_filter_3d(arrays)
    if args.sh_degree is not None:
        arrays.sh = with_sh_degree(arrays.sh, args.sh_degree)
    if args.drop_extra:
        arrays.extra = {}
    degree = arrays.sh_degree
    if out_fmt == "splat":
        if arrays.sh_degree > 0:
            print(f"note: .splat holds colour only: SH bands 1..{arrays.sh_degree} dropped", file=sys.stderr)
        degree = 0
    if out_fmt not in ("ply",) and arrays.extra:
        print(f"note: {out_fmt} has no extra properties: dropped {', '.join(arrays.extra)}", file=sys.stderr)
    fmt = SPLAT_FORMATS[out_fmt]
    if fmt.notes:
        print(f"note: {fmt.description}: {fmt.notes}", file=sys.stderr)
    write_splats(arrays, args.output, **options)
    t2 = time.perf_counter()
    print(
        f"wrote {args.output}: {arrays.num_gaussians:,} Gaussians, SH degree {degree}, "
        f"{_size(args.output) / 2**20:.2f} MiB "
        f"(read {1000 * (t1 - t0):.0f} ms, write {1000 * (t2 - t1):.0f} ms)"
    )
    return 0


def _size(path: str) -> int:
    """Bytes of a file, or of an unbundled SOG (meta.json and the images it names beside it)."""
    if os.path.basename(path).lower() != "meta.json":
        return os.path.getsize(path)
    folder = os.path.dirname(os.path.abspath(path))
    names = [n for n in os.listdir(folder) if n == "meta.json" or n.endswith(".webp")]
    return sum(os.path.getsize(os.path.join(folder, n)) for n in names)
