"""PlayCanvas / SuperSplat `.compressed.ply`: read and write (pure numpy).

Layout (learned from PlayCanvas splat-transform's decoder and gsplat's exporter; no code copied):

- element `chunk`, one row per 256 splats (the last may hold fewer), float32: min_x min_y min_z max_x max_y
  max_z, min_scale_x/y/z max_scale_x/y/z (log scales), and optionally min_r min_g min_b max_r max_g max_b
  (12 or 18 properties). Without the colour range the colour bytes are the colour itself.
- element `vertex`, four uint32 a splat:
    packed_position  x: bits 21-31 (11), y: bits 11-20 (10), z: bits 0-10 (11); unorm, lerp in the chunk box
    packed_rotation  bits 30-31: index of the largest component (dropped), then three 10-bit unorm fields
                     (bits 20-29, 10-19, 0-9) holding the other components in order, each (v - 0.5) * sqrt(2);
                     the largest is sqrt(1 - a^2 - b^2 - c^2). Components in file order rot_0..rot_3 (wxyz)
    packed_scale     11-10-11 like the position, lerp between the chunk's min/max log scale
    packed_color     r: bits 24-31, g: 16-23, b: 8-15, opacity: 0-7, each unorm 8 bits
- optional element `sh`: uint8 f_rest_0..(3(K-1)-1), channel-major like INRIA; value = (n - 0.5) * 8 with
  n = 0 for 0, 1 for 255, else (v + 0.5) / 256.

Decoded to raw parameters: SH DC = (colour - 0.5) / SH_C0, opacity logit = log(a / (1 - a)) with `a` kept in
[1e-6, 1 - 1e-6] so that fully transparent/opaque splats stay finite. Arithmetic is float64, stored float32.
Chunk ranges that are NaN/Inf are refused (SplatFileError naming the chunk), not decoded to NaN.

Writing (`write_compressed_ply`) first sorts the Gaussians in Morton (z-curve) order of their positions so
that each 256-splat chunk is spatially tight, as PlayCanvas' tools do (`morton=False` keeps the order), then
takes each chunk's min/max. Quantisation error of a write -> read round trip: position <= chunk extent / 4094
(x, z; 11 bits) or / 2046 (y; 10 bits), log scale likewise within the chunk's scale range, colour <= chunk
colour range / 510, opacity <= 1/510 (before the logit), rotation components <= sqrt(2) / 2046 before
renormalisation, f_rest <= 8 / 512 inside [-4, 4) (clamped outside).
"""

from __future__ import annotations

import os

import numpy as np

from .arrays import SplatArrays
from .common import atomic_output, checked, sigmoid, unit_quats
from .errors import SplatFileError
from .ply import PlyHeader, nonfinite_report, read_ply_element, read_ply_header

SH_C0 = 0.28209479177387814
CHUNK_SIZE = 256
OPACITY_EPS = 1e-6
_BOX = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z")
_SCALE = ("min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z")
_COLOR = ("min_r", "min_g", "min_b", "max_r", "max_g", "max_b")
_PACKED = ("packed_position", "packed_rotation", "packed_scale", "packed_color")


def is_compressed_ply_header(header: PlyHeader) -> bool:
    """True when the header has a `chunk` element and a `vertex` element with packed_* properties."""
    vertex = header.element("vertex")
    return (
        header.element("chunk") is not None and vertex is not None and vertex.property(_PACKED[0]) is not None
    )


def _check_layout(path: str | os.PathLike, header: PlyHeader) -> bool:
    """Validate the compressed layout; returns whether chunks carry a colour range."""
    chunk, vertex, sh = header.element("chunk"), header.element("vertex"), header.element("sh")
    if chunk is None or vertex is None:
        raise SplatFileError(path, "a compressed .ply needs elements 'chunk' and 'vertex'")
    missing = [n for n in _BOX + _SCALE if chunk.property(n) is None]
    if missing:
        raise SplatFileError(path, f"element 'chunk' is missing properties: {', '.join(missing)}")
    has_color = chunk.property("min_r") is not None
    if has_color and any(chunk.property(n) is None for n in _COLOR):
        raise SplatFileError(
            path, f"element 'chunk' has a partial colour range (needs all of {', '.join(_COLOR)})"
        )
    bad = [p.name for p in chunk.properties if p.type not in ("float", "float32")]
    if bad:
        raise SplatFileError(path, f"chunk properties must be float, these are not: {', '.join(bad)}")
    missing = [n for n in _PACKED if vertex.property(n) is None]
    if missing:
        raise SplatFileError(path, f"element 'vertex' is missing properties: {', '.join(missing)}")
    bad = [n for n in _PACKED if vertex.property(n).type not in ("uint", "uint32")]
    if bad:
        raise SplatFileError(path, f"vertex properties must be uint, these are not: {', '.join(bad)}")
    if vertex.count == 0:
        raise SplatFileError(path, "the compressed PLY has 0 vertices (an empty scene)")
    expected_chunks = -(-vertex.count // CHUNK_SIZE)
    if chunk.count != expected_chunks:
        raise SplatFileError(
            path,
            f"{chunk.count} chunks for {vertex.count} vertices; expected ceil({vertex.count}/{CHUNK_SIZE}) = "
            f"{expected_chunks} (the vertex or chunk count in the header is wrong)",
        )
    if sh is not None:
        if sh.count != vertex.count:
            raise SplatFileError(path, f"element 'sh' has {sh.count} rows for {vertex.count} vertices")
        names = [f"f_rest_{i}" for i in range(len(sh.properties))]
        if len(names) not in (0, 9, 24, 45) or sh.names != names:
            raise SplatFileError(path, "element 'sh' must hold uchar f_rest_0..f_rest_{8|23|44} in order")
        if any(p.type not in ("uchar", "uint8") for p in sh.properties):
            raise SplatFileError(path, "element 'sh' properties must be uchar")
    return has_color


def _unorm(v: np.ndarray, shift: int, bits: int) -> np.ndarray:
    mask = (1 << bits) - 1
    return ((v >> np.uint32(shift)) & np.uint32(mask)).astype(np.float64) / mask


def _sh_lut() -> np.ndarray:
    """f_rest of each byte: n = 0 for 0, 1 for 255, else (v + 0.5) / 256; value (n - 0.5) * 8 (float32)."""
    v = np.arange(256, dtype=np.float64)
    unit = np.where(v == 0, 0.0, np.where(v == 255, 1.0, (v + 0.5) / 256.0))
    return ((unit - 0.5) * 8.0).astype(np.float32)


_SH_LUT = _sh_lut()  # a table lookup: 45 bytes a splat decode without float64 temporaries


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return a * (1.0 - t) + b * t


def read_compressed_ply(path: str | os.PathLike, check_finite: bool = True) -> SplatArrays:
    header = read_ply_header(path)
    has_color = _check_layout(path, header)
    chunks = read_ply_element(path, header, "chunk")
    vertex = read_ply_element(path, header, "vertex")
    n = vertex.shape[0]
    for name in chunks.dtype.names:
        bad = np.flatnonzero(~np.isfinite(chunks[name]))
        if bad.size:
            raise SplatFileError(
                path,
                f"chunk {bad[0]} has a non-finite range value ({name} = {chunks[name][bad[0]]}); "
                f"{bad.size} chunk(s) are bad: the file is corrupt",
            )

    def chunk_col(name: str) -> np.ndarray:  # [N] the splat's chunk value
        return np.repeat(chunks[name].astype(np.float64), CHUNK_SIZE)[:n]

    pos = vertex["packed_position"]
    means = np.empty((n, 3), np.float32)
    for axis, (shift, bits) in enumerate(((21, 11), (11, 10), (0, 11))):
        lo, hi = chunk_col(_BOX[axis]), chunk_col(_BOX[axis + 3])
        means[:, axis] = _lerp(lo, hi, _unorm(pos, shift, bits))

    scl = vertex["packed_scale"]
    log_scales = np.empty((n, 3), np.float32)
    for axis, (shift, bits) in enumerate(((21, 11), (11, 10), (0, 11))):
        lo, hi = chunk_col(_SCALE[axis]), chunk_col(_SCALE[axis + 3])
        log_scales[:, axis] = _lerp(lo, hi, _unorm(scl, shift, bits))

    rot = vertex["packed_rotation"]
    norm = 1.0 / (np.sqrt(2.0) * 0.5)
    abc = np.stack([(_unorm(rot, s, 10) - 0.5) * norm for s in (20, 10, 0)], axis=1)  # [N, 3]
    largest = np.sqrt(np.maximum(0.0, 1.0 - (abc * abc).sum(axis=1)))
    which = (rot >> np.uint32(30)).astype(np.int64)
    quats = np.empty((n, 4), np.float32)
    rows = np.arange(n)
    for j in range(4):  # slot j holds the dropped largest component, else the next stored one in order
        stored = abc[rows, np.minimum(j - (j > which), 2)]
        quats[:, j] = np.where(which == j, largest, stored)

    col = vertex["packed_color"]
    rgb = np.stack([_unorm(col, s, 8) for s in (24, 16, 8)], axis=1)  # [N, 3] in [0, 1]
    if has_color:
        lo = np.stack([chunk_col(c) for c in _COLOR[:3]], axis=1)
        hi = np.stack([chunk_col(c) for c in _COLOR[3:]], axis=1)
        rgb = _lerp(lo, hi, rgb)
    alpha = np.clip(_unorm(col, 0, 8), OPACITY_EPS, 1.0 - OPACITY_EPS)
    opacity_logits = np.log(alpha / (1.0 - alpha)).astype(np.float32)

    k = 1
    rest = None
    if header.element("sh") is not None and header.element("sh").properties:
        sh_rows = read_ply_element(path, header, "sh")
        m = len(sh_rows.dtype.names)
        k = m // 3 + 1
        codes = sh_rows.view(np.uint8).reshape(n, 3, k - 1).transpose(0, 2, 1)  # channel-major in the file
        rest = np.take(_SH_LUT, np.ascontiguousarray(codes), mode="clip")
    sh = np.empty((n, k, 3), np.float32)
    sh[:, 0, :] = (rgb - 0.5) / SH_C0
    if rest is not None:
        sh[:, 1:, :] = rest

    arrays = SplatArrays(means, quats, log_scales, opacity_logits, sh)
    if check_finite:
        report = nonfinite_report(
            {"position": means, "rotation": quats, "scale": log_scales, "colour": arrays.sh}
        )
        if report:
            raise SplatFileError(path, f"non-finite values after decoding (bad chunk ranges?): {report}")
    return arrays


# ---------------------------------------------------------------------------------------------- write
def morton_order(means: np.ndarray) -> np.ndarray:
    """Indices that sort positions along a 3D z-order curve (10 bits per axis inside the bounding box)."""
    m = means.astype(np.float64)
    lo, hi = m.min(axis=0), m.max(axis=0)
    cell = np.clip(((m - lo) / np.where(hi > lo, hi - lo, 1.0) * 1023.0).astype(np.int64), 0, 1023)
    code = np.zeros(m.shape[0], np.int64)
    for bit in range(10):
        for axis in range(3):
            code |= ((cell[:, axis] >> bit) & 1) << (3 * bit + (2 - axis))
    return np.argsort(code, kind="stable")


def _chunk_range(values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """[N, D] -> per-chunk min and max [C, D] (the last chunk may be partial)."""
    pad = -n % CHUNK_SIZE
    v = np.concatenate([values, np.repeat(values[-1:], pad, axis=0)]) if pad else values
    v = v.reshape(-1, CHUNK_SIZE, values.shape[1])
    return v.min(axis=1), v.max(axis=1)


def _pack_unorm(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, layout) -> np.ndarray:
    """[N, D] values in per-splat ranges -> uint32 with field j of `layout` ((shift, bits), ...)."""
    t = (values - lo) / np.where(hi > lo, hi - lo, 1.0)
    out = np.zeros(values.shape[0], np.uint32)
    for j, (shift, bits) in enumerate(layout):
        mask = (1 << bits) - 1
        q = np.clip(np.rint(np.clip(t[:, j], 0.0, 1.0) * mask), 0, mask).astype(np.uint32)
        out |= q << np.uint32(shift)
    return out


def write_compressed_ply(arrays: SplatArrays, path: str | os.PathLike, morton: bool = True) -> None:
    """Write a PlayCanvas compressed .ply (18-float chunks, 4 packed uint32 a splat, uint8 f_rest). Extras
    are dropped. `morton`: reorder the Gaussians along a z-order curve first (tight chunks)."""
    checked(arrays, path)
    n = arrays.num_gaussians
    order = morton_order(arrays.means) if morton else np.arange(n)
    means = arrays.means[order].astype(np.float64)
    scales = np.clip(arrays.log_scales[order].astype(np.float64), -20.0, 20.0)
    rgb = arrays.sh[order, 0].astype(np.float64) * SH_C0 + 0.5
    ranges = [_chunk_range(v, n) for v in (means, scales, rgb)]
    chunk_rows = np.concatenate([np.concatenate(r, axis=1) for r in ranges], axis=1).astype("<f4")  # [C, 18]

    def per_splat(r: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        # the float32 ranges the reader will see, repeated per splat
        lo, hi = (np.repeat(x.astype(np.float32).astype(np.float64), CHUNK_SIZE, axis=0)[:n] for x in r)
        return lo, hi

    xyz = ((21, 11), (11, 10), (0, 11))
    vertex = np.empty((n, 4), "<u4")
    vertex[:, 0] = _pack_unorm(means, *per_splat(ranges[0]), xyz)
    vertex[:, 2] = _pack_unorm(scales, *per_splat(ranges[1]), xyz)
    vertex[:, 1] = _pack_rotation(arrays.quats[order])
    alpha = sigmoid(arrays.opacity_logits[order])[:, None]
    full = np.concatenate([rgb, alpha], axis=1)
    lo, hi = per_splat(ranges[2])
    vertex[:, 3] = _pack_unorm(
        full, np.c_[lo, np.zeros(n)], np.c_[hi, np.ones(n)], ((24, 8), (16, 8), (8, 8), (0, 8))
    )

    props = [f"property float {name}" for name in _BOX + _SCALE + _COLOR]
    lines = ["ply", "format binary_little_endian 1.0", "comment written by splatbrush"]
    lines += [f"element chunk {chunk_rows.shape[0]}", *props, f"element vertex {n}"]
    lines += [f"property uint {name}" for name in _PACKED]
    k1 = arrays.sh.shape[1] - 1
    sh_bytes = None
    if k1:
        rest = arrays.sh[order, 1:].astype(np.float64).transpose(0, 2, 1).reshape(n, 3 * k1)  # channel-major
        sh_bytes = np.clip(np.trunc((rest / 8.0 + 0.5) * 256.0), 0, 255).astype(np.uint8)
        lines += [f"element sh {n}"] + [f"property uchar f_rest_{i}" for i in range(3 * k1)]
    header = ("\n".join(lines) + "\nend_header\n").encode("ascii")
    with atomic_output(path) as f:
        f.write(header)
        f.write(chunk_rows.tobytes())
        f.write(vertex.tobytes())
        if sh_bytes is not None:
            f.write(sh_bytes.tobytes())


def _pack_rotation(quats: np.ndarray) -> np.ndarray:
    """wxyz -> 2-bit index of the largest |component| and three 10-bit unorm fields (smallest three)."""
    q = unit_quats(quats)
    n = q.shape[0]
    rows = np.arange(n)
    largest = np.argmax(np.abs(q), axis=1)
    q = np.where(q[rows, largest][:, None] < 0, -q, q)
    out = largest.astype(np.uint32) << np.uint32(30)
    for slot, shift in enumerate((20, 10, 0)):
        c = q[rows, slot + (slot >= largest)]
        v = np.clip(np.rint((c / np.sqrt(2.0) + 0.5) * 1023.0), 0, 1023).astype(np.uint32)
        out |= v << np.uint32(shift)
    return out
