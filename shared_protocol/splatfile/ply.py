"""INRIA 3DGS binary .ply: read and write (pure numpy + stdlib).

Vertex properties of the INRIA layout, in the order INRIA's trainer writes them:

    x y z [nx ny nz] f_dc_0..2 f_rest_0..(3(K-1)-1) opacity scale_0..2 rot_0..3

with K = (deg+1)^2 SH coefficients per channel (deg 0..3) and f_rest channel-major: f_rest_{c*(K-1)+j} is
`sh[:, 1 + j, c]`. Values are the raw (pre-activation) parameters; quaternions (wxyz) are kept as stored,
unnormalised. Also read:

- gsplat `export_splats(format="ply")`: same order without nx ny nz (f_rest also channel-major);
- Mip-Splatting `save_ply`: INRIA order plus a trailing `filter_3D` (kept in `extra`; not fused);
- any property order, and other per-vertex properties (kept in `SplatArrays.extra` with their own dtype).

On write the standard properties go in INRIA order (nx ny nz right after x y z when `extra` has all three),
then the other extras in their order. Write -> read is bit-exact, and a file already in INRIA order with
float32 properties and no comments is reproduced byte for byte.

Binary little-endian bodies are read in cache-sized blocks straight into the output arrays (a 1M-Gaussian SH-3
file reads in about 0.1-0.2 s); ASCII and big-endian bodies go through `plyfile` (see `ply_header`). Bad files
raise `SplatFileError` naming the file and the problem.
"""

from __future__ import annotations

import os
import re

import numpy as np

from .arrays import SplatArrays
from .common import atomic_output, checked, nonfinite_report
from .errors import SplatFileError
from .ply_header import (
    PLY_TYPES,
    PlyElement,
    PlyHeader,
    PlyProperty,
    check_body_size,
    read_elements_plyfile,
    read_ply_element,
    read_ply_header,
)

__all__ = [  # the header names are re-exported: older code imports them from here
    "PLY_TYPES",
    "PlyElement",
    "PlyHeader",
    "PlyProperty",
    "atomic_output",
    "check_body_size",
    "checked",
    "fuse_filter_3d",
    "inria_property_names",
    "nonfinite_report",
    "read_ply",
    "read_ply_element",
    "read_ply_header",
    "write_ply",
]

# numpy dtype (kind, itemsize) -> the PLY type name we write
_WRITE_TYPES: dict[tuple[str, int], str] = {
    ("i", 1): "char",
    ("u", 1): "uchar",
    ("i", 2): "short",
    ("u", 2): "ushort",
    ("i", 4): "int",
    ("u", 4): "uint",
    ("f", 4): "float",
    ("f", 8): "double",
}
NORMAL_NAMES = ("nx", "ny", "nz")
_REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2")
_REQUIRED += ("rot_0", "rot_1", "rot_2", "rot_3")
_F_REST = re.compile(r"f_rest_(\d+)$")


# ---------------------------------------------------------------------------------------------- layout
def sh_rest_count(sh_degree: int) -> int:
    """Number of f_rest properties for an SH degree (0, 9, 24, 45)."""
    return 3 * ((sh_degree + 1) ** 2 - 1)


def inria_property_names(sh_degree: int, normals: bool = True) -> list[str]:
    """The standard property names in INRIA order."""
    names = ["x", "y", "z"] + (list(NORMAL_NAMES) if normals else [])
    names += ["f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(sh_rest_count(sh_degree))]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names


def _sh_rest_names(path: str | os.PathLike, names: list[str]) -> list[str]:
    """The f_rest_* names in index order; checks they are 0..M-1 with M = 3((deg+1)^2 - 1), deg <= 3."""
    indices = sorted(int(m.group(1)) for m in map(_F_REST.match, names) if m)
    m = len(indices)
    if indices != list(range(m)):
        missing = sorted(set(range(max(indices) + 1)) - set(indices))
        raise SplatFileError(
            path, f"f_rest properties are not numbered 0..{m - 1}: missing f_rest_{missing[0]}"
        )
    if m not in (0, 9, 24, 45):
        raise SplatFileError(
            path,
            f"{m} f_rest properties is not 3*((deg+1)^2-1) for an SH degree 0..3 (expected 0, 9, 24 or 45)",
        )
    return [f"f_rest_{i}" for i in range(m)]


# ---------------------------------------------------------------------------------------------- read
def read_ply(path: str | os.PathLike, check_finite: bool = True) -> SplatArrays:
    """Read an INRIA-style 3DGS .ply (see the module docstring for the variants)."""
    header = read_ply_header(path)
    vertex = header.element("vertex")
    if vertex is None:
        raise SplatFileError(
            path, f"PLY has no 'vertex' element (elements: {[e.name for e in header.elements]})"
        )
    if header.element("chunk") is not None and vertex.property("packed_position") is not None:
        raise SplatFileError(path, "this is a PlayCanvas compressed .ply: read it with read_compressed_ply")
    if vertex.count == 0:
        raise SplatFileError(path, "the PLY has 0 vertices (an empty scene)")
    names = vertex.names
    missing = [n for n in _REQUIRED if n not in names]
    if missing:
        raise SplatFileError(
            path,
            f"missing vertex properties: {', '.join(missing)} (a 3DGS .ply needs x y z, f_dc_0..2, opacity, "
            f"scale_0..2, rot_0..3; it has {', '.join(names[:20])}{' ...' if len(names) > 20 else ''})",
        )
    rest = _sh_rest_names(path, names)
    check_body_size(path, header)
    n = vertex.count
    k = len(rest) // 3 + 1
    arrays = SplatArrays(
        means=np.empty((n, 3), np.float32),
        quats=np.empty((n, 4), np.float32),
        log_scales=np.empty((n, 3), np.float32),
        opacity_logits=np.empty(n, np.float32),
        sh=np.empty((n, k, 3), np.float32),
    )
    standard = set(_REQUIRED) | set(rest)
    extras = [p.name for p in vertex.properties if p.name not in standard]
    maybe_nonfinite = True
    little = header.format == "binary_little_endian"
    if little and all(p.dtype == np.dtype("<f4") for p in vertex.properties):
        maybe_nonfinite = _read_float_rows(path, header, names, rest, extras, arrays)
    else:  # mixed types or ASCII / big-endian: structured rows, per-field copies (extras keep their dtype)
        if little:
            rec = np.fromfile(path, dtype=vertex.dtype, count=n, offset=header.element_offset("vertex"))
        else:
            rec = read_elements_plyfile(path, header)["vertex"]
        rows = {name: rec[name] for name in names}
        _fill(arrays, rows, slice(0, n), rest)
        arrays.extra.update({name: np.ascontiguousarray(rec[name]) for name in extras})
    if check_finite and maybe_nonfinite:
        groups = {"x y z": arrays.means, "rot": arrays.quats, "scale": arrays.log_scales}
        groups.update({"opacity": arrays.opacity_logits, "f_dc/f_rest": arrays.sh})
        if nonfinite_report(groups):  # cheap check first; name the exact properties only on failure
            columns = {name: _column(arrays, name, rest) for name in _REQUIRED + tuple(rest)}
            raise SplatFileError(
                path, f"non-finite values (NaN/Inf) of {n} vertices: {nonfinite_report(columns)}"
            )
    return arrays


def _fill(arrays: SplatArrays, rows: dict[str, np.ndarray], where: slice, rest: list[str]) -> None:
    """Copy property columns (`rows`: name -> [M] values of rows `where`) into the standard arrays."""
    for j, c in enumerate("xyz"):
        arrays.means[where, j] = rows[c]
    for j in range(4):
        arrays.quats[where, j] = rows[f"rot_{j}"]
    for j in range(3):
        arrays.log_scales[where, j] = rows[f"scale_{j}"]
        arrays.sh[where, 0, j] = rows[f"f_dc_{j}"]
    arrays.opacity_logits[where] = rows["opacity"]
    k1 = len(rest) // 3
    for i, name in enumerate(rest):  # channel-major: f_rest_{c*(K-1)+j} -> sh[:, 1+j, c]
        arrays.sh[where, 1 + i % k1, i // k1] = rows[name]


def _column(arrays: SplatArrays, name: str, rest: list[str]) -> np.ndarray:
    """One standard property's values, read back from the arrays (for error reports)."""
    if name in ("x", "y", "z"):
        return arrays.means[:, "xyz".index(name)]
    if name == "opacity":
        return arrays.opacity_logits
    prefix, j = name.rsplit("_", 1)
    j = int(j)
    if prefix == "rot":
        return arrays.quats[:, j]
    if prefix == "scale":
        return arrays.log_scales[:, j]
    if prefix == "f_dc":
        return arrays.sh[:, 0, j]
    k1 = len(rest) // 3
    return arrays.sh[:, 1 + j % k1, j // k1]


def _cols(idx: list[int]) -> slice | list[int]:
    """A slice when the column indices are consecutive (a view, no copy), else the list (a gather)."""
    if idx == list(range(idx[0], idx[0] + len(idx))):
        return slice(idx[0], idx[0] + len(idx))
    return idx


def _read_float_rows(
    path: str | os.PathLike,
    header: PlyHeader,
    names: list[str],
    rest: list[str],
    extras: list[str],
    arrays: SplatArrays,
) -> bool:
    """Fast path for all-float32 vertices: read blocks of rows that fit in the CPU cache and copy their
    columns straight into the output arrays (half the memory traffic of reading the whole body first).
    Returns False when every value (extras included) is finite, True when some may not be."""
    n, p = arrays.num_gaussians, len(names)
    index = {name: i for i, name in enumerate(names)}
    means = _cols([index[c] for c in ("x", "y", "z")])
    quats = _cols([index[f"rot_{j}"] for j in range(4)])
    scales = _cols([index[f"scale_{j}"] for j in range(3)])
    dc = _cols([index[f"f_dc_{j}"] for j in range(3)])
    opacity = index["opacity"]
    k1 = len(rest) // 3
    rest_cols = (
        [_cols([index[name] for name in rest[c * k1 : (c + 1) * k1]]) for c in range(3)] if rest else []
    )
    for name in extras:
        arrays.extra[name] = np.empty(n, np.float32)
    extra_cols = [(arrays.extra[name], index[name]) for name in extras]

    all_finite = True
    block_rows = max(1, (4 << 20) // (4 * p))  # ~4 MiB blocks
    buf = np.empty((min(block_rows, n), p), "<f4")
    with open(path, "rb") as f:
        f.seek(header.element_offset("vertex"))
        for start in range(0, n, block_rows):
            m = min(block_rows, n - start)
            block = buf[:m]
            got = f.readinto(memoryview(block).cast("B"))
            if got != block.nbytes:
                raise SplatFileError(path, f"file ended early (changed while reading?) at vertex {start}")
            end = start + m
            arrays.means[start:end] = block[:, means]
            arrays.quats[start:end] = block[:, quats]
            arrays.log_scales[start:end] = block[:, scales]
            arrays.opacity_logits[start:end] = block[:, opacity]
            arrays.sh[start:end, 0, :] = block[:, dc]
            for c, cols in enumerate(rest_cols):  # channel-major in the file: one copy per channel
                arrays.sh[start:end, 1:, c] = block[:, cols]
            for out, col in extra_cols:
                out[start:end] = block[:, col]
            if all_finite:  # min/max propagate NaN and show Inf; cheap while the block is in cache
                all_finite = bool(np.isfinite(block.min()) and np.isfinite(block.max()))
    return not all_finite


# ---------------------------------------------------------------------------------------------- write
def write_ply(arrays: SplatArrays, path: str | os.PathLike) -> None:
    """Write an INRIA .ply: standard properties in INRIA order, then `arrays.extra` in its order."""
    checked(arrays, path)
    n, k = arrays.num_gaussians, arrays.sh.shape[1]
    normals = all(name in arrays.extra for name in NORMAL_NAMES)
    names = inria_property_names(arrays.sh_degree, normals)
    extras = [name for name in arrays.extra if not (normals and name in NORMAL_NAMES)]
    clash = [name for name in extras if name in names]
    if clash:
        raise SplatFileError(
            path, f"cannot write: extra properties {clash} clash with standard property names"
        )
    types = ["float"] * len(names)
    for name in extras:
        a = arrays.extra[name]
        t = _WRITE_TYPES.get((a.dtype.kind, a.dtype.itemsize))
        if t is None:
            raise SplatFileError(
                path, f"cannot write: extra property {name!r} has dtype {a.dtype}, not a PLY type"
            )
        types.append(t)
    names += extras

    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property {t} {name}" for t, name in zip(types, names, strict=True)]
    header_bytes = ("\n".join(header) + "\nend_header\n").encode("ascii")

    # column sources in file order, all [N, w] views (no copies): f_rest is channel-major, one view a channel
    sources: list[np.ndarray] = [arrays.means]
    if normals:
        sources += [arrays.extra[c][:, None] for c in NORMAL_NAMES]
    sources += [arrays.sh[:, 0, :]] + [arrays.sh[:, 1:, c] for c in range(3) if k > 1]
    sources += [arrays.opacity_logits[:, None], arrays.log_scales, arrays.quats]
    sources += [arrays.extra[name][:, None] for name in extras]

    with atomic_output(path) as f:
        f.write(header_bytes)
        if all(t == "float" for t in types):  # fast path: fill cache-sized [rows, P] float32 blocks
            block_rows = max(1, (4 << 20) // (4 * len(names)))
            buf = np.empty((min(block_rows, n), len(names)), "<f4")
            for start in range(0, n, block_rows):
                end = min(start + block_rows, n)
                block = buf[: end - start]
                col = 0
                for src in sources:
                    block[:, col : col + src.shape[1]] = src[start:end]
                    col += src.shape[1]
                f.write(memoryview(block).cast("B"))
        else:  # some extras are not float32: a structured array
            body = np.empty(n, np.dtype([(name, PLY_TYPES[t]) for name, t in zip(names, types, strict=True)]))
            col = 0
            for src in sources:
                for j in range(src.shape[1]):
                    body[names[col + j]] = src[:, j]
                col += src.shape[1]
            body.tofile(f)


# ---------------------------------------------------------------------------------------------- Mip-Splatting
def fuse_filter_3d(arrays: SplatArrays, name: str = "filter_3D") -> SplatArrays:
    """Bake Mip-Splatting's 3D smoothing filter (extra property `filter_3D`, written by its `save_ply`)
    into the scales and opacities, as Mip-Splatting's renderer applies it (and its `save_fused_ply` does):

        scale'^2 = scale^2 + filter^2,   opacity' = opacity * sqrt(prod(scale^2) / prod(scale'^2))

    Returns new arrays without `filter_3D`; other fields are shared. Raises KeyError when absent."""
    f = arrays.extra[name].astype(np.float64)[:, None]  # [N, 1]
    s2 = np.exp(2.0 * arrays.log_scales.astype(np.float64))  # [N, 3]
    fused = s2 + f * f
    coef = np.sqrt(np.prod(s2 / fused, axis=1))  # [N]
    opacity = coef / (1.0 + np.exp(-arrays.opacity_logits.astype(np.float64)))
    opacity = np.clip(opacity, 1e-7, 1.0 - 1e-7)
    return SplatArrays(
        means=arrays.means,
        quats=arrays.quats,
        log_scales=(0.5 * np.log(fused)).astype(np.float32),
        opacity_logits=np.log(opacity / (1.0 - opacity)).astype(np.float32),
        sh=arrays.sh,
        extra={k: v for k, v in arrays.extra.items() if k != name},
    )
