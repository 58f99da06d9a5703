"""Niantic `.spz`: read versions 1-4, write versions 2, 3 and 4 (pure numpy + stdlib; `zstandard` lazily).

Written from nianticlabs/spz `README.md` ("File Format") and `src/cc/load-spz.cc`. Attribute streams, in this
order, N = number of points:

    positions   N x 3 x 3 bytes: 24-bit two's-complement fixed point, `fractionalBits` fractional bits
                (version 1: N x 3 float16)
    alphas      N bytes: round(sigmoid(opacity) * 255)
    colors      N x 3 bytes: round(f_dc * 0.15 * 255 + 127.5)   (0.15, not SH_C0: spz's wide colour range)
    scales      N x 3 bytes: round((log scale + 10) * 16)
    rotations   v1-2: N x 3 bytes x, y, z of the unit quaternion with w >= 0, round(c * 127.5 + 127.5);
                v3-4: N x uint32 "smallest three": bits 30-31 index (in x, y, z, w order) of the largest
                |component| (made positive, not stored), then the other three in index order, 10 bits each
                (sign bit, 9-bit magnitude m = round(511 |c| / sqrt(1/2))), the first in the highest bits
    sh          N x dim x 3 bytes, colour channel fastest (dim = 3, 8, 15, 24 for degree 1-4):
                (q - 128) / 128; written rounded to buckets of 8 (degree 1, 5 bits) and 16 (degree 2+, 4 bits)

Versions 1-3: the whole file is gzip; inside, a 16-byte header (magic 0x5053474e "NGSP", version, numPoints,
shDegree, fractionalBits, flags, reserved) then the six streams back to back. Version 4: a 32-byte plain
header (magic, version, numPoints, shDegree, fractionalBits, flags, numStreams, tocByteOffset, 12 reserved
bytes), extension records up to tocByteOffset, a table of contents (compressed u64, uncompressed u64 per
stream) and one zstd frame per non-empty stream. Flag 0x1: antialiased (`SplatArrays.meta["antialiased"]`).

Axes: spz stores RUB (x right, y up, z back); Splatbrush's arrays follow INRIA's .ply (RDF: y down, z front).
Reading and writing flip y and z (positions; quaternion x, y, z components by (1, -1, -1); SH coefficients by
the parity of each basis function, the table in spz's `splat-types.h`), as spz's own loader does when asked
for RDF. `axes="file"` keeps the stored axes.

Degree-4 SH (spz allows it) is read as degree 3: the 9 degree-4 coefficients per channel are dropped.

Quantisation error of a write -> read round trip (the spec's steps; tested in
tests/test_scene_formats_quant.py, listed in docs/formats.md): positions <= 2^-(fractionalBits+1) (12 bits:
0.12 mm per metre), log scales <= 1/32, f_dc <= 1/(2*0.15*255) (displayed colour within 0.94/255), opacity
<= 1/510 (after the sigmoid), SH <= (bucket/2 + 1/2)/128 (0.035 degree 1, 0.066 degree 2-3; inside [-1, 1));
rotations: v3-4 each stored component within half the smallest-three step sqrt(1/2)/511 (angle <= 4 sqrt(3)
of that half step), v2 x, y, z within 0.5/127.5 with w derived (large angle errors where w is near 0).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

from .arrays import SplatArrays
from .common import (
    atomic_output,
    check_decoded,
    checked,
    logit,
    optional_module,
    read_file_bytes,
    sigmoid,
    unit_quats,
)
from .errors import SplatFileError

MAGIC = 0x5053474E  # "NGSP" in file order
GZIP_MAGIC = b"\x1f\x8b"
COLOR_SCALE = 0.15
SQRT1_2 = np.float64(np.sqrt(0.5))
SH_DIM = {0: 0, 1: 3, 2: 8, 3: 15, 4: 24}  # SH coefficients per channel beyond DC
WRITE_VERSIONS = (2, 3, 4)
DEFAULT_VERSION = 3  # gzip: no extra package, and read by every spz reader we know; 4 needs zstandard
LEGACY_HEADER = struct.Struct("<IIIBBBB")  # 16 bytes
NGSP_HEADER = struct.Struct("<IIIBBBBI12s")  # 32 bytes
FLAG_ANTIALIASED = 0x1
FLAG_EXTENSIONS = 0x2
# RDF <-> RUB flips y and z. Per SH coefficient (degree 1..3, basis order of splat-types.h / INRIA) the sign
# is the basis function's parity under (x, y, z) -> (x, -y, -z).
_X, _Y, _Z = 1.0, -1.0, -1.0
_SH_FLIP = np.array(
    [_Y, _Z, _X, _X * _Y, _Y * _Z, 1.0, _X * _Z, 1.0, _Y, _X * _Y * _Z, _Y, _Z, _X, _Z, _X], np.float32
)
_QUAT_FLIP = np.array([1.0, _Y * _Z, _X * _Z, _X * _Y], np.float32)  # wxyz
_POS_FLIP = np.array([_X, _Y, _Z], np.float32)


def is_spz_bytes(head: bytes) -> bool:
    """True for a file that starts like .spz: zstd-era "NGSP" magic, or gzip (the legacy versions)."""
    return head[:4] == b"NGSP" or head[:2] == GZIP_MAGIC


# ---------------------------------------------------------------------------------------------- read
def _gunzip(path, data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as e:
        raise SplatFileError(path, f"the .spz gzip stream is truncated or corrupt ({e})") from None


def _stream_sizes(n: int, degree: int, version: int) -> list[int]:
    rot = 3 if version < 3 else 4
    pos = 6 if version == 1 else 9
    return [n * pos, n, n * 3, n * 3, n * rot, n * SH_DIM[degree] * 3]


def _check_header(path, version: int, n: int, degree: int, versions: range) -> None:
    if version not in versions:
        raise SplatFileError(
            path,
            f"unsupported .spz version {version} (this layout holds versions {versions[0]}-{versions[-1]})",
        )
    if n == 0:
        raise SplatFileError(path, "the .spz holds 0 points (an empty scene)")
    if degree not in SH_DIM:
        raise SplatFileError(path, f"SH degree {degree} in the .spz header is not 0..4")


def _legacy_streams(path, raw: bytes) -> tuple[dict, list[bytes]]:
    if len(raw) < LEGACY_HEADER.size:
        raise SplatFileError(path, f"the .spz is too short for its 16-byte header ({len(raw)} bytes)")
    magic, version, n, degree, bits, flags, _ = LEGACY_HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise SplatFileError(
            path, f"not an .spz file: magic {magic:#010x} inside the gzip, expected {MAGIC:#x}"
        )
    _check_header(path, version, n, degree, range(1, 4))
    sizes = _stream_sizes(n, degree, version)
    need = LEGACY_HEADER.size + sum(sizes)
    if len(raw) < need:
        raise SplatFileError(
            path,
            f"truncated .spz: {n} points of SH degree {degree} need {need} bytes after gunzip, "
            f"the stream has {len(raw)} (the file is cut short or its point count is wrong)",
        )
    if len(raw) > need and not flags & FLAG_EXTENSIONS:
        raise SplatFileError(
            path,
            f"the .spz holds {len(raw) - need} bytes more than {n} points need and has no extension flag: "
            "the point count in its header is wrong",
        )
    streams, offset = [], LEGACY_HEADER.size
    for size in sizes:
        streams.append(raw[offset : offset + size])
        offset += size
    return {"version": version, "n": n, "degree": degree, "bits": bits, "flags": flags}, streams


def _ngsp_streams(path, data: bytes) -> tuple[dict, list[bytes]]:
    if len(data) < NGSP_HEADER.size:
        raise SplatFileError(path, f"the .spz is too short for its 32-byte header ({len(data)} bytes)")
    magic, version, n, degree, bits, flags, count, toc, _ = NGSP_HEADER.unpack_from(data)
    _check_header(path, version, n, degree, range(4, 5))
    sizes = [s for s in _stream_sizes(n, degree, version) if s]
    if count != len(sizes):
        raise SplatFileError(
            path, f"the .spz header lists {count} streams, SH degree {degree} needs {len(sizes)}"
        )
    end = toc + 16 * count
    if toc < NGSP_HEADER.size or end > len(data):
        raise SplatFileError(path, f"the .spz table of contents (bytes {toc}..{end}) is outside the file")
    zstd = optional_module(path, "zstandard", "reading .spz version 4 (zstd streams)")
    entries = np.frombuffer(data, "<u8", 2 * count, toc).reshape(count, 2)
    streams, offset = [], end
    for i, ((packed, unpacked), size) in enumerate(zip(entries.tolist(), sizes, strict=True)):
        if unpacked != size:
            raise SplatFileError(
                path, f"stream {i} of the .spz unpacks to {unpacked} bytes, {n} points need {size}"
            )
        if offset + packed > len(data):
            raise SplatFileError(path, f"truncated .spz: stream {i} runs past the end of the file")
        try:
            out = zstd.ZstdDecompressor().decompress(data[offset : offset + packed], max_output_size=size)
        except zstd.ZstdError as e:
            raise SplatFileError(path, f"stream {i} of the .spz is not valid zstd ({e})") from None
        if len(out) != size:
            raise SplatFileError(
                path, f"stream {i} of the .spz unpacked to {len(out)} bytes, expected {size}"
            )
        streams.append(out)
        offset += packed
    if offset != len(data):
        raise SplatFileError(path, f"the .spz has {len(data) - offset} bytes after its last stream")
    if not SH_DIM[degree]:
        streams.append(b"")
    return {"version": version, "n": n, "degree": degree, "bits": bits, "flags": flags}, streams


def _decode_rotations(raw: bytes, n: int, version: int) -> np.ndarray:
    """[N, 4] float32 wxyz in the file's axes."""
    q = np.empty((n, 4), np.float64)  # xyzw while decoding
    if version < 3:
        xyz = np.frombuffer(raw, np.uint8).reshape(n, 3).astype(np.float64) / 127.5 - 1.0
        q[:, :3] = xyz
        q[:, 3] = np.sqrt(np.maximum(0.0, 1.0 - (xyz * xyz).sum(axis=1)))
    else:
        comp = np.frombuffer(raw, "<u4").astype(np.int64)
        largest = comp >> 30
        total = np.zeros(n)
        for j in range(4):
            rank = j - (j > largest)  # position of component j among the three stored ones
            bits = (comp >> (10 * (2 - np.clip(rank, 0, 2)))) & 0x3FF
            value = SQRT1_2 * (bits & 0x1FF) / 511.0 * np.where(bits & 0x200, -1.0, 1.0)
            value = np.where(largest == j, 0.0, value)
            q[:, j] = value
            total += value * value
        rows = np.arange(n)
        q[rows, largest] = np.sqrt(np.maximum(0.0, 1.0 - total))
    return q[:, [3, 0, 1, 2]].astype(np.float32)


def read_spz(path: str | os.PathLike, check_finite: bool = True, axes: str = "rdf") -> SplatArrays:
    """Read a .spz (versions 1-4). `axes="rdf"` (default) converts spz's RUB to INRIA .ply axes; "file"
    keeps the stored axes."""
    data = read_file_bytes(path)
    if data[:4] == b"NGSP":
        info, streams = _ngsp_streams(path, data)
    elif data[:2] == GZIP_MAGIC:
        info, streams = _legacy_streams(path, _gunzip(path, data))
    else:
        raise SplatFileError(path, f"not an .spz file: it starts with {data[:8]!r}, not gzip or 'NGSP'")
    n, degree, version = info["n"], info["degree"], info["version"]
    pos_raw, alpha_raw, color_raw, scale_raw, rot_raw, sh_raw = streams

    if version == 1:
        means = np.frombuffer(pos_raw, "<f2").reshape(n, 3).astype(np.float32)
    else:
        b = np.frombuffer(pos_raw, np.uint8).reshape(n, 3, 3).astype(np.int32)
        fixed = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
        fixed = (fixed ^ 0x800000) - 0x800000  # sign-extend 24 bits
        means = (fixed.astype(np.float64) / float(1 << info["bits"])).astype(np.float32)
    opacity = logit(np.frombuffer(alpha_raw, np.uint8) / 255.0)
    colors = np.frombuffer(color_raw, np.uint8).reshape(n, 3).astype(np.float64)
    log_scales = (np.frombuffer(scale_raw, np.uint8).reshape(n, 3) / 16.0 - 10.0).astype(np.float32)
    quats = _decode_rotations(rot_raw, n, version)
    dim = SH_DIM[degree]
    kept = min(dim, 15)
    sh = np.empty((n, kept + 1, 3), np.float32)
    sh[:, 0] = (colors / 255.0 - 0.5) / COLOR_SCALE
    if dim:
        rest = np.frombuffer(sh_raw, np.uint8).reshape(n, dim, 3)[:, :kept]
        sh[:, 1:] = (rest.astype(np.float32) - 128.0) / 128.0
    arrays = SplatArrays(means, quats, log_scales, opacity, sh)
    arrays.meta["antialiased"] = bool(info["flags"] & FLAG_ANTIALIASED)
    if axes == "rdf":
        _flip_axes(arrays)
    elif axes != "file":
        raise ValueError(f"axes must be 'rdf' or 'file', not {axes!r}")
    return check_decoded(path, arrays) if check_finite else arrays


def _flip_axes(arrays: SplatArrays) -> None:
    """RUB <-> RDF in place (an involution)."""
    arrays.means *= _POS_FLIP
    arrays.quats *= _QUAT_FLIP
    k = arrays.sh.shape[1]
    if k > 1:
        arrays.sh[:, 1:] *= _SH_FLIP[: k - 1, None]


# ---------------------------------------------------------------------------------------------- write
def _fractional_bits(path, means: np.ndarray) -> int:
    """12 (spz's choice, ~0.24 mm per unit) unless the scene is too large for 24 bits; then fewer."""
    extent = float(np.abs(means).max(initial=0.0))
    for bits in range(12, -1, -1):
        if extent * (1 << bits) < (1 << 23) - 1:
            return bits
    raise SplatFileError(
        path, f"cannot write .spz: a position of magnitude {extent:.4g} does not fit 24 bits"
    )


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _encode_rotations(quats: np.ndarray, version: int) -> bytes:
    q = unit_quats(quats)[:, [1, 2, 3, 0]]  # xyzw
    n = q.shape[0]
    if version < 3:
        q = np.where(q[:, 3:4] < 0, -q, q)
        return _u8(q[:, :3] * 127.5 + 127.5).tobytes()
    largest = np.argmax(np.abs(q), axis=1)
    rows = np.arange(n)
    q = np.where(q[rows, largest][:, None] < 0, -q, q)
    comp = largest.astype(np.uint32)
    for j in range(4):
        keep = largest != j
        mag = np.floor(511.0 * np.abs(q[:, j]) / SQRT1_2 + 0.5).astype(np.uint32)
        field = ((q[:, j] < 0).astype(np.uint32) << 9) | np.minimum(mag, 511)
        comp = np.where(keep, (comp << np.uint32(10)) | field, comp)
    return comp.astype("<u4").tobytes()


def _quantize_sh(rest: np.ndarray, sh1_bits: int, sh_rest_bits: int) -> np.ndarray:
    """[N, dim, 3] float -> uint8 as spz's `quantizeSH` (round to 8 bits, then to the bucket centre)."""
    q = np.rint(rest.astype(np.float64) * 128.0).astype(np.int64) + 128
    bucket = np.full(rest.shape[1], 1 << (8 - sh_rest_bits), np.int64)
    bucket[:3] = 1 << (8 - sh1_bits)
    b = bucket[None, :, None]
    q = np.trunc((q + b // 2) / b).astype(np.int64) * b  # C integer division truncates toward zero
    return np.clip(q, 0, 255).astype(np.uint8)


def write_spz(
    arrays: SplatArrays,
    path: str | os.PathLike,
    version: int = DEFAULT_VERSION,
    axes: str = "rdf",
    sh1_bits: int = 5,
    sh_rest_bits: int = 4,
    zstd_level: int = 12,
) -> None:
    """Write a .spz of `version` 2, 3 or 4 (4 needs `zstandard`). `sh1_bits`/`sh_rest_bits` (1..8): SH
    precision (spz's defaults 5 and 4; 8 keeps every 8-bit step). Extras are dropped (spz has none)."""
    checked(arrays, path)
    if version not in WRITE_VERSIONS:
        raise SplatFileError(path, f"cannot write .spz version {version}: choose one of {WRITE_VERSIONS}")
    if not (1 <= sh1_bits <= 8 and 1 <= sh_rest_bits <= 8):
        raise SplatFileError(path, f"SH bits must be 1..8, not {sh1_bits} and {sh_rest_bits}")
    if axes not in ("rdf", "file"):
        raise ValueError(f"axes must be 'rdf' or 'file', not {axes!r}")
    n, degree = arrays.num_gaussians, arrays.sh_degree
    means = arrays.means.astype(np.float64)
    quats = arrays.quats.astype(np.float64)
    sh = arrays.sh.astype(np.float64)
    if axes == "rdf":
        means = means * _POS_FLIP
        quats = quats * _QUAT_FLIP
        if degree:
            sh[:, 1:] *= _SH_FLIP[: sh.shape[1] - 1, None]
    bits = _fractional_bits(path, means)
    fixed = np.rint(means * (1 << bits)).astype(np.int64) & 0xFFFFFF
    pos = np.stack([(fixed >> s) & 0xFF for s in (0, 8, 16)], axis=-1).astype(np.uint8)  # [N, 3, 3]
    streams = [
        pos.tobytes(),
        _u8(sigmoid(arrays.opacity_logits) * 255.0).tobytes(),
        _u8(sh[:, 0] * (COLOR_SCALE * 255.0) + 127.5).tobytes(),
        _u8((arrays.log_scales.astype(np.float64) + 10.0) * 16.0).tobytes(),
        _encode_rotations(quats, version),
        _quantize_sh(sh[:, 1:], sh1_bits, sh_rest_bits).tobytes() if degree else b"",
    ]
    flags = FLAG_ANTIALIASED if arrays.meta.get("antialiased") else 0
    if version < 4:
        body = LEGACY_HEADER.pack(MAGIC, version, n, degree, bits, flags, 0) + b"".join(streams)
        data = gzip.compress(body, compresslevel=6, mtime=0)
        with atomic_output(path) as f:
            f.write(data)
        return
    zstd = optional_module(path, "zstandard", "writing .spz version 4 (zstd streams)")
    streams = [s for s in streams if s]
    compressor = zstd.ZstdCompressor(level=zstd_level, write_content_size=True)
    packed = [compressor.compress(s) for s in streams]
    header = NGSP_HEADER.pack(MAGIC, 4, n, degree, bits, flags, len(packed), NGSP_HEADER.size, b"\0" * 12)
    toc = np.array([[len(p), len(s)] for p, s in zip(packed, streams, strict=True)], "<u8").tobytes()
    with atomic_output(path) as f:
        f.write(header + toc)
        for p in packed:
            f.write(p)
