"""glTF 2.0 / GLB with `KHR_gaussian_splatting`: read and write (pure numpy + stdlib).

Written from KhronosGroup/glTF `extensions/2.0/Khronos/KHR_gaussian_splatting/README.md` (release candidate).
A splat primitive is a POINTS primitive whose `extensions` hold `KHR_gaussian_splatting`; its attributes:

    POSITION                                   VEC3 float                      -> means
    KHR_gaussian_splatting:ROTATION            VEC4 float / normalized byte, short: unit quaternion x y z w
    KHR_gaussian_splatting:SCALE               VEC3 float / (normalized) ubyte, ushort: LINEAR scale
    KHR_gaussian_splatting:OPACITY             SCALAR float / normalized ubyte, ushort: opacity in [0, 1]
    KHR_gaussian_splatting:SH_DEGREE_0_COEF_0  VEC3 float: f_dc (colour = 0.5 + SH_C0 * f_dc)
    KHR_gaussian_splatting:SH_DEGREE_l_COEF_n  VEC3 float, l = 1..3, n = 0..2l (m = -l..l): sh[:, l^2 + n]

The SH basis (with the Condon-Shortley phase) is the one INRIA and gsplat use, so coefficients are copied as
they are. Every splat primitive of the file is read (meshes beside them are ignored) and concatenated, in the
local space of its mesh: node transforms are not applied (`read_gltf` says how many instancing nodes have one
in `meta["gltf_node_transforms"]`). No axis change (glTF is y-up; a pre-trained scene keeps its axes).

Written as one mesh, one POINTS primitive, one node; float accessors; `.glb` (binary) or `.gltf` (JSON with
the buffer embedded as base64). Round trip: bit-exact, because the raw log scales, opacity logits and
quaternions also go into application-specific attributes (`_SPLATBRUSH_*`, which other readers ignore; read
back only when the standard attributes equal what they decode to). Without them (`exact=False`, or a file
from another tool): positions and SH bit-exact; log scale and opacity logit through float32 exp/log and
sigmoid/logit (log scale within 2^-23 * (1 + |log scale|); opacity logit within 1e-6 * (1 + e^|logit|));
quaternions come back normalised.
"""

from __future__ import annotations

import base64
import json
import os
import struct

import numpy as np

from .arrays import SplatArrays
from .common import atomic_output, check_decoded, checked, logit, read_file_bytes, sigmoid, unit_quats
from .errors import SplatFileError

EXTENSION = "KHR_gaussian_splatting"
GLB_MAGIC = b"glTF"
CHUNK_JSON, CHUNK_BIN = 0x4E4F534A, 0x004E4942
PREFIX = EXTENSION + ":"
COMPONENTS = {5120: "i1", 5121: "u1", 5122: "<i2", 5123: "<u2", 5125: "<u4", 5126: "<f4"}
WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
NORM_MAX = {5120: 127.0, 5121: 255.0, 5122: 32767.0, 5123: 65535.0}
ALLOWED = {  # attribute -> (type, component types)
    "POSITION": ("VEC3", (5126, 5120, 5121, 5122, 5123)),
    PREFIX + "ROTATION": ("VEC4", (5126, 5120, 5122)),
    PREFIX + "SCALE": ("VEC3", (5126, 5121, 5123)),
    PREFIX + "OPACITY": ("SCALAR", (5126, 5121, 5123)),
}


# Application-specific attributes (glTF: names start with "_"; other readers ignore them) holding the raw
# parameters, so that our own write -> read is bit-exact. Used on read only when the standard attributes are
# exactly what they decode to, so a file edited by another tool reads from the standard ones.
RAW_LOG_SCALE, RAW_OPACITY, RAW_QUAT = (
    "_SPLATBRUSH_LOG_SCALE",
    "_SPLATBRUSH_OPACITY_LOGIT",
    "_SPLATBRUSH_QUAT_WXYZ",
)
RAW_ATTRIBUTES = {RAW_LOG_SCALE: "VEC3", RAW_OPACITY: "SCALAR", RAW_QUAT: "VEC4"}


def sh_attribute(degree: int, n: int) -> str:
    return f"{PREFIX}SH_DEGREE_{degree}_COEF_{n}"


# ---------------------------------------------------------------------------------------------- read
def _split_glb(path, data: bytes) -> tuple[dict, bytes | None]:
    if len(data) < 20:
        raise SplatFileError(path, f"truncated GLB: {len(data)} bytes, a GLB header and JSON chunk need 20")
    magic, version, length = struct.unpack_from("<4sII", data)
    if version != 2:
        raise SplatFileError(path, f"GLB version {version} is not supported (glTF 2.0 only)")
    if length > len(data):
        raise SplatFileError(path, f"truncated GLB: the header says {length} bytes, the file has {len(data)}")
    chunks, offset = {}, 12
    while offset + 8 <= length:
        size, kind = struct.unpack_from("<II", data, offset)
        if offset + 8 + size > length:
            raise SplatFileError(path, f"truncated GLB: a chunk of {size} bytes runs past the end")
        chunks.setdefault(kind, data[offset + 8 : offset + 8 + size])
        offset += 8 + size + (-size % 4)
    if CHUNK_JSON not in chunks:
        raise SplatFileError(path, "the GLB has no JSON chunk")
    return _json(path, chunks[CHUNK_JSON]), chunks.get(CHUNK_BIN)


def _json(path, raw: bytes) -> dict:
    try:
        doc = json.loads(raw.decode("utf-8").rstrip(" \0"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SplatFileError(path, f"the glTF JSON is not valid ({e})") from None
    asset = doc.get("asset") if isinstance(doc, dict) else None
    if not isinstance(asset, dict) or not str(asset.get("version", "")).startswith("2"):
        raise SplatFileError(path, "not a glTF 2.0 document (asset.version is not 2.x)")
    return doc


def _ints(path, obj: dict, where: str, *keys: str) -> None:
    """The `keys` present in `obj` are non-negative integers (glTF indices, counts, offsets)."""
    for key in keys:
        value = obj.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SplatFileError(path, f"{where}: {key} {value!r} is not a non-negative integer")


class _Buffers:
    def __init__(self, path, doc: dict, glb_bin: bytes | None):
        self.path, self.doc, self.glb_bin, self.cache = path, doc, glb_bin, {}

    def buffer(self, index: int) -> bytes:
        if index in self.cache:
            return self.cache[index]
        buffers = self.doc.get("buffers", [])
        if not 0 <= index < len(buffers):
            raise SplatFileError(self.path, f"buffer {index} does not exist ({len(buffers)} buffers)")
        _ints(self.path, buffers[index], f"buffer {index}", "byteLength")
        uri = buffers[index].get("uri")
        if uri is not None and not isinstance(uri, str):
            raise SplatFileError(self.path, f"buffer {index}: uri {uri!r} is not a string")
        if uri is None:
            if self.glb_bin is None:
                raise SplatFileError(
                    self.path, f"buffer {index} has no uri and the file has no GLB BIN chunk"
                )
            data = self.glb_bin
        elif uri.startswith("data:"):
            try:
                data = base64.b64decode(uri.split(",", 1)[1], validate=True)
            except (IndexError, ValueError) as e:
                raise SplatFileError(self.path, f"buffer {index}: bad base64 data URI ({e})") from None
        else:
            folder = os.path.dirname(os.path.abspath(self.path))
            try:
                with open(os.path.join(folder, uri), "rb") as f:
                    data = f.read()
            except OSError:
                raise SplatFileError(self.path, f"buffer {index}: cannot read its file {uri!r}") from None
        if len(data) < buffers[index].get("byteLength", 0):
            raise SplatFileError(
                self.path,
                f"buffer {index} has {len(data)} bytes, byteLength says {buffers[index]['byteLength']}",
            )
        self.cache[index] = data
        return data

    def accessor(self, index: int, name: str) -> tuple[np.ndarray, int]:
        """[count, width] float64 values (normalized integers mapped to [0, 1] or [-1, 1]), componentType."""
        accessors = self.doc.get("accessors", [])
        if not isinstance(index, int) or not 0 <= index < len(accessors):
            raise SplatFileError(
                self.path, f"{name}: accessor {index} does not exist ({len(accessors)} accessors)"
            )
        acc = accessors[index]
        ctype, kind, count = acc.get("componentType"), acc.get("type"), acc.get("count", 0)
        if ctype not in COMPONENTS or kind not in WIDTH:
            raise SplatFileError(
                self.path, f"{name}: accessor {index} has componentType {ctype}, type {kind}"
            )
        if "sparse" in acc:
            raise SplatFileError(self.path, f"{name}: sparse accessors are not supported")
        _ints(self.path, acc, f"{name}: accessor {index}", "count", "byteOffset", "bufferView")
        width, dtype = WIDTH[kind], np.dtype(COMPONENTS[ctype])
        if "bufferView" not in acc:
            return np.zeros((count, width)), ctype
        views = self.doc.get("bufferViews", [])
        if not 0 <= acc["bufferView"] < len(views):
            raise SplatFileError(self.path, f"{name}: bufferView {acc['bufferView']} does not exist")
        view = views[acc["bufferView"]]
        _ints(self.path, view, f"bufferView {acc['bufferView']}", "buffer", "byteOffset", "byteLength")
        _ints(self.path, view, f"bufferView {acc['bufferView']}", "byteStride")
        data = self.buffer(view.get("buffer", -1))
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        item = width * dtype.itemsize
        stride = view.get("byteStride") or item
        need = start + (stride * (count - 1) + item if count else 0)
        view_end = view.get("byteOffset", 0) + view.get("byteLength", 0)
        if need > min(view_end, len(data)):
            raise SplatFileError(
                self.path,
                f"{name}: accessor {index} ({count} x {kind}) reaches byte {need}, past its bufferView or "
                "buffer "
                f"end {min(view_end, len(data))}",
            )
        rows = np.lib.stride_tricks.as_strided(
            np.frombuffer(data, np.uint8, need - start, start), (count, item), (stride, 1)
        )
        values = np.ascontiguousarray(rows).view(dtype).reshape(count, width).astype(np.float64)
        if acc.get("normalized") and ctype in NORM_MAX:
            values = np.maximum(values / NORM_MAX[ctype], -1.0)
        return values, ctype


def _objects(path, owner: dict, key: str, where: str) -> list[dict]:
    """`owner[key]` as a list of JSON objects (missing: empty), or a SplatFileError naming `where`."""
    value = owner.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise SplatFileError(path, f"the glTF {where}{key} is not a list of objects: {str(value)[:60]}")
    return value


def _check_structure(path, doc: dict) -> None:
    """The arrays the reader walks are lists of objects (so that a malformed file gives a clear error)."""
    for key in ("accessors", "bufferViews", "buffers", "nodes"):
        _objects(path, doc, key, "")
    for key in ("extensionsUsed", "extensionsRequired"):
        if not isinstance(doc.get(key, []), list):
            raise SplatFileError(path, f"the glTF {key} is not a list")
    for m, mesh in enumerate(_objects(path, doc, "meshes", "")):
        for p, prim in enumerate(_objects(path, mesh, "primitives", f"meshes[{m}].")):
            for key in ("attributes", "extensions"):
                if not isinstance(prim.get(key, {}), dict):
                    raise SplatFileError(path, f"the glTF meshes[{m}].primitives[{p}].{key} is not an object")


def _splat_primitives(path, doc: dict) -> list[tuple[int, dict]]:
    _check_structure(path, doc)
    found = []
    for m, mesh in enumerate(doc.get("meshes", [])):
        for prim in mesh.get("primitives", []):
            if EXTENSION in prim.get("extensions", {}):
                found.append((m, prim))
    if not found:
        meshes = len(doc.get("meshes", []))
        raise SplatFileError(
            path,
            f"the glTF has no {EXTENSION} primitive ({meshes} meshes, extensionsUsed "
            f"{doc.get('extensionsUsed', [])}): it holds no Gaussian splats",
        )
    unsupported = [e for e in doc.get("extensionsRequired", []) if e != EXTENSION]
    if unsupported:
        raise SplatFileError(path, f"the glTF requires extensions Splatbrush cannot decode: {unsupported}")
    return found


def _read_primitive(path, buffers: _Buffers, prim: dict) -> SplatArrays:
    attrs = prim.get("attributes", {})
    if prim.get("mode", 4) != 0:
        raise SplatFileError(
            path, f"a {EXTENSION} primitive must have mode 0 (POINTS), not {prim.get('mode', 4)}"
        )
    missing = [a for a in (*ALLOWED, sh_attribute(0, 0)) if a not in attrs]
    if missing:
        raise SplatFileError(path, f"the splat primitive is missing attributes {missing}")
    cols = {}
    for name, (kind, ctypes) in ALLOWED.items():
        values, ctype = buffers.accessor(attrs[name], name)
        if values.shape[1] != WIDTH[kind] or ctype not in ctypes:
            raise SplatFileError(path, f"{name} must be {kind} of component types {ctypes}, not {ctype}")
        cols[name] = values
    degree = 0
    while degree < 3 and sh_attribute(degree + 1, 0) in attrs:
        degree += 1
    n = cols["POSITION"].shape[0]
    sh = np.zeros((n, (degree + 1) ** 2, 3), np.float32)
    for d in range(degree + 1):
        for i in range(2 * d + 1):
            name = sh_attribute(d, i)
            if name not in attrs:
                raise SplatFileError(path, f"SH degree {d} is partly defined: {name} is missing")
            values, _ = buffers.accessor(attrs[name], name)
            if values.shape != (n, 3):
                raise SplatFileError(path, f"{name} has shape {values.shape}, expected ({n}, 3)")
            sh[:, d * d + i] = values
    for name, values in cols.items():
        if values.shape[0] != n:
            raise SplatFileError(path, f"{name} has {values.shape[0]} values for {n} positions")
    scale, opacity = cols[PREFIX + "SCALE"], cols[PREFIX + "OPACITY"][:, 0]
    if (scale < 0).any() or not np.isfinite(scale).all():
        raise SplatFileError(
            path, f"{np.count_nonzero(~(scale >= 0))} SCALE values are negative or not finite"
        )
    bad = np.count_nonzero(~((opacity >= 0) & (opacity <= 1)))
    if bad:
        raise SplatFileError(path, f"{bad} OPACITY values are outside [0, 1]")
    with np.errstate(divide="ignore"):
        log_scales = np.log(np.maximum(scale, 1e-30)).astype(np.float32)
    quats = cols[PREFIX + "ROTATION"][:, [3, 0, 1, 2]].astype(np.float32)
    arrays = SplatArrays(cols["POSITION"].astype(np.float32), quats, log_scales, logit(opacity), sh)
    _use_raw(buffers, attrs, cols, arrays)
    return arrays


def _use_raw(buffers: _Buffers, attrs: dict, cols: dict, arrays: SplatArrays) -> None:
    """Take the raw parameters from our `_SPLATBRUSH_*` attributes where the standard ones match them."""
    if not all(name in attrs for name in RAW_ATTRIBUTES):
        return
    raw = {}
    for name, kind in RAW_ATTRIBUTES.items():
        values, ctype = buffers.accessor(attrs[name], name)
        if ctype != 5126 or values.shape != (arrays.num_gaussians, WIDTH[kind]):
            return
        raw[name] = values.astype(np.float32)
    std_scale, std_opacity, std_rot = _standard_columns(
        raw[RAW_QUAT], raw[RAW_LOG_SCALE], raw[RAW_OPACITY][:, 0]
    )
    if (
        np.array_equal(std_scale, cols[PREFIX + "SCALE"].astype(np.float32))
        and np.array_equal(std_opacity[:, 0], cols[PREFIX + "OPACITY"][:, 0].astype(np.float32))
        and np.array_equal(std_rot, cols[PREFIX + "ROTATION"].astype(np.float32))
    ):
        arrays.log_scales, arrays.opacity_logits, arrays.quats = (
            raw[RAW_LOG_SCALE],
            raw[RAW_OPACITY][:, 0],
            raw[RAW_QUAT],
        )


def _standard_columns(quats: np.ndarray, log_scales: np.ndarray, logits: np.ndarray):
    """The extension's float32 SCALE, OPACITY [N, 1] and ROTATION (xyzw) of raw parameters."""
    scale = np.exp(log_scales.astype(np.float64)).astype("<f4")
    opacity = sigmoid(logits).astype("<f4")[:, None]
    rotation = unit_quats(quats)[:, [1, 2, 3, 0]].astype("<f4")
    return scale, opacity, rotation


def _concat(parts: list[SplatArrays]) -> SplatArrays:
    if len(parts) == 1:
        return parts[0]
    k = max(p.sh.shape[1] for p in parts)
    sh = [np.pad(p.sh, ((0, 0), (0, k - p.sh.shape[1]), (0, 0))) for p in parts]
    return SplatArrays(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in ("means", "quats", "log_scales")),
        np.concatenate([p.opacity_logits for p in parts]),
        np.concatenate(sh),
    )


def read_gltf(path: str | os.PathLike, check_finite: bool = True) -> SplatArrays:
    """Read every KHR_gaussian_splatting primitive of a .glb or .gltf (see the module docstring)."""
    data = read_file_bytes(path)
    doc, glb_bin = _split_glb(path, data) if data[:4] == GLB_MAGIC else (_json(path, data), None)
    found = _splat_primitives(path, doc)
    buffers = _Buffers(path, doc, glb_bin)
    arrays = _concat([_read_primitive(path, buffers, prim) for _, prim in found])
    splat_meshes = {m for m, _ in found}
    moved = [
        node
        for node in doc.get("nodes", [])
        if node.get("mesh") in splat_meshes
        and any(k in node for k in ("matrix", "translation", "rotation", "scale"))
    ]
    arrays.meta["gltf_node_transforms"] = len(moved)
    return check_decoded(path, arrays) if check_finite else arrays


# ---------------------------------------------------------------------------------------------- write
def gltf_document(arrays: SplatArrays, exact: bool = True) -> tuple[dict, bytes]:
    """The glTF JSON (without buffer uri) and its binary buffer for `arrays`. `exact`: also write the raw
    parameters as `_SPLATBRUSH_*` attributes (bit-exact read back; 32 bytes more a Gaussian)."""
    n = arrays.num_gaussians
    scale, opacity, rotation = _standard_columns(arrays.quats, arrays.log_scales, arrays.opacity_logits)
    columns = [
        ("POSITION", arrays.means.astype("<f4"), "VEC3"),
        (PREFIX + "ROTATION", rotation, "VEC4"),
        (PREFIX + "SCALE", scale, "VEC3"),
        (PREFIX + "OPACITY", opacity, "SCALAR"),
    ]
    for d in range(arrays.sh_degree + 1):
        for i in range(2 * d + 1):
            columns.append((sh_attribute(d, i), np.ascontiguousarray(arrays.sh[:, d * d + i], "<f4"), "VEC3"))
    if exact:
        columns.append((RAW_LOG_SCALE, arrays.log_scales.astype("<f4"), "VEC3"))
        columns.append((RAW_OPACITY, arrays.opacity_logits.astype("<f4")[:, None], "SCALAR"))
        columns.append((RAW_QUAT, arrays.quats.astype("<f4"), "VEC4"))
    blob, views, accessors, attributes = bytearray(), [], [], {}
    for i, (name, values, kind) in enumerate(columns):
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": values.nbytes})
        acc = {"bufferView": i, "componentType": 5126, "count": n, "type": kind}
        if name == "POSITION":  # glTF requires min/max on POSITION
            acc["min"], acc["max"] = values.min(axis=0).tolist(), values.max(axis=0).tolist()
        accessors.append(acc)
        attributes[name] = i
        blob += values.tobytes()
    doc = {
        "asset": {"version": "2.0", "generator": "splatbrush"},
        "extensionsUsed": [EXTENSION],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "gaussians"}],
        "meshes": [
            {
                "name": "gaussians",
                "primitives": [
                    {
                        "attributes": attributes,
                        "mode": 0,
                        "extensions": {EXTENSION: {"kernel": "ellipse", "colorSpace": "srgb_rec709_display"}},
                    }
                ],
            }
        ],
        "buffers": [{"byteLength": len(blob)}],
        "bufferViews": views,
        "accessors": accessors,
    }
    return doc, bytes(blob)


def write_gltf(arrays: SplatArrays, path: str | os.PathLike, exact: bool = True) -> None:
    """`.glb` (binary container) or `.gltf` (JSON, buffer as a base64 data URI). Extras are dropped.
    `exact=False`: only the extension's attributes (scales, opacities, rotations then round through float32
    exp/sigmoid/normalisation; see the module docstring)."""
    checked(arrays, path)
    doc, blob = gltf_document(arrays, exact)
    if os.fspath(path).lower().endswith(".gltf"):
        doc["buffers"][0]["uri"] = "data:application/octet-stream;base64," + base64.b64encode(blob).decode()
        with atomic_output(path) as f:
            f.write(json.dumps(doc, separators=(",", ":")).encode())
        return
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    blob += b"\0" * (-len(blob) % 4)
    total = 12 + 8 + len(text) + 8 + len(blob)
    with atomic_output(path) as f:
        f.write(struct.pack("<4sII", GLB_MAGIC, 2, total))
        f.write(struct.pack("<II", len(text), CHUNK_JSON) + text)
        f.write(struct.pack("<II", len(blob), CHUNK_BIN))
        f.write(blob)
