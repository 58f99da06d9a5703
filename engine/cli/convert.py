"""`splatbrush convert IN OUT`: convert between splat file formats.

Reads .ply (INRIA, gsplat, Mip-Splatting), .compressed.ply (PlayCanvas) and .splat; writes .ply or .splat
(by OUT's extension). Writing .compressed.ply is not supported. Converting to .splat keeps SH degree 0
only, drops extra properties and quantises colour, opacity and rotation to 8 bits (said on stderr).
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
        help="convert a splat file between .ply, .compressed.ply (read only) and .splat",
        description="Convert IN to OUT; the format is chosen by OUT's extension (.ply or .splat). "
        "Writing PlayCanvas .compressed.ply is not supported.",
    )
    p.add_argument("input", metavar="IN", help="a .ply, .compressed.ply or .splat file")
    p.add_argument("output", metavar="OUT", help="the file to write: .ply or .splat")
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
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(func=run)


def with_sh_degree(sh: np.ndarray, degree: int) -> np.ndarray:  # [N, K, 3] -> [N, (degree+1)^2, 3]
    k = (degree + 1) ** 2
    if sh.shape[1] >= k:
        return np.ascontiguousarray(sh[:, :k])
    out = np.zeros((sh.shape[0], k, 3), sh.dtype)
    out[:, : sh.shape[1]] = sh
    return out


def run(args: argparse.Namespace) -> int:
    from shared_protocol.splatfile import fuse_filter_3d, read_splats, write_splats
    from shared_protocol.splatfile.io import output_format

    out_fmt = output_format(args.output)  # fail on a bad extension before reading
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
    if out_fmt == "splat":
        if arrays.sh_degree > 0:
            print(f"note: .splat holds colour only: SH bands 1..{arrays.sh_degree} dropped", file=sys.stderr)
        if arrays.extra:
            print(f"note: .splat has no extra properties: dropped {', '.join(arrays.extra)}", file=sys.stderr)
        print("note: .splat stores colour, opacity and rotation in 8 bits", file=sys.stderr)
    write_splats(arrays, args.output)
    t2 = time.perf_counter()
    print(
        f"wrote {args.output}: {arrays.num_gaussians:,} Gaussians, SH degree "
        f"{arrays.sh_degree if out_fmt == 'ply' else 0}, {os.path.getsize(args.output) / 2**20:.2f} MiB "
        f"(read {1000 * (t1 - t0):.0f} ms, write {1000 * (t2 - t1):.0f} ms)"
    )
    return 0
