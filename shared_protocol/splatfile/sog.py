"""PlayCanvas SOG version 2: read and write, bundled (`.sog`, a zip) or unbundled (`meta.json` + WebP files).

Written from playcanvas/developer-site `docs/user-manual/gaussian-splatting/formats/sog.md`. Pure numpy +
stdlib, except the lossless WebP images, which go through Pillow (imported only here, with a clear error when
missing; Blender's Python has no Pillow). Gaussian i is pixel (i % W, i // W) of every per-Gaussian image:

    means_l, means_u  RGB: 16-bit q per axis (u << 8 | l); n = lerp(mins, maxs, q / 65535) and the position is
                      sign(n) (exp|n| - 1) (a symmetric log)
    quats             RGB: the three smaller components of the unit quaternion (w, x, y, z order, the largest
                      made positive), c = (byte / 255 - 0.5) * sqrt(2); A = 252 + index of the largest
    scales            RGB: indices into the 256-entry `scales.codebook` of log scales
    sh0               RGB: indices into `sh0.codebook` of f_dc; A: opacity * 255 (after the sigmoid)
    shN (optional)    labels RG: 16-bit palette index; centroids: 64 palette entries a row, each `coeffs`
                      pixels (3, 8, 15 for 1-3 bands) whose RGB index `shN.codebook`

Axes: the spec text says x right, y up, z back, but splat-transform (which writes these files) stores the PLY
axes unchanged and reads SOG back as PLY-space data; so do we: no axis change either way.

Writing picks W = ceil(sqrt(N)), keeps the Gaussian order, and builds each 256-entry codebook with 1-D k-means
(exact when a column has at most 256 distinct values, so SOG -> SOG is lossless); the SH palette is the
distinct SH rows when there are at most 65,536, else a median-cut split into 65,536 cells (their means).

Quantisation error of a write -> read round trip: positions <= (maxs - mins) / 131070 in the log domain
(relative 1.5e-5 of the log extent), rotations <= 2 * sqrt(3) * (0.5 / 255) * sqrt(2) rad, opacity <= 1/510,
scales and colours by their codebook (at most half the largest gap between adjacent codebook entries).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib

import numpy as np

from .arrays import SplatArrays
from .common import atomic_output, check_decoded, checked, logit, optional_module, sigmoid, unit_quats
from .errors import SplatFileError
from .sog_codebook import kmeans_1d, palette

VERSION = 2
PALETTE_MAX = 65536
SH_COEFFS = {1: 3, 2: 8, 3: 15}  # bands -> coefficients per channel
SQRT2 = float(np.sqrt(2.0))
ZIP_MAGIC = b"PK\x03\x04"


def is_sog_path(path: str | os.PathLike) -> bool:
    """A folder with a meta.json, or a file named meta.json: an unbundled SOG."""
    p = os.fspath(path)
    if os.path.isdir(p):
        return os.path.isfile(os.path.join(p, "meta.json"))
    return os.path.basename(p).lower() == "meta.json"


# ---------------------------------------------------------------------------------------------- files
class _Files:
    """Named files of a SOG: members of a zip or files beside meta.json."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.zip: zipfile.ZipFile | None = None
        if os.path.isdir(self.path):
            self.folder = self.path
        elif os.path.basename(self.path).lower() == "meta.json":
            self.folder = os.path.dirname(self.path)
        else:
            try:
                self.zip = zipfile.ZipFile(self.path)
            except FileNotFoundError:
                raise SplatFileError(path, "file not found") from None
            except (zipfile.BadZipFile, OSError, NotImplementedError) as e:
                raise SplatFileError(path, f"not a bundled SOG: not a readable zip file ({e})") from None

    def read(self, name: str) -> bytes:
        if self.zip is not None:
            try:
                return self.zip.read(name)
            except KeyError:
                members = ", ".join(self.zip.namelist()[:12])
                raise SplatFileError(self.path, f"the SOG zip has no {name!r} (it holds {members})") from None
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as e:
                raise SplatFileError(self.path, f"cannot read {name!r} from the SOG zip ({e})") from None
        try:
            with open(os.path.join(self.folder, name), "rb") as f:
                return f.read()
        except OSError:
            raise SplatFileError(self.path, f"the SOG folder has no readable file {name!r}") from None


def _decode_webp(path, name: str, data: bytes) -> np.ndarray:
    """[H, W, 4] uint8 RGBA of one image (raw bytes, no colour management)."""
    image_mod = optional_module(path, "PIL.Image", "reading SOG images (WebP)", package="pillow")
    try:
        with image_mod.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGBA"))
    except (OSError, ValueError, SyntaxError) as e:  # PIL.UnidentifiedImageError is an OSError
        raise SplatFileError(path, f"{name} is not a readable image ({e})") from None


def _meta(path, files: _Files) -> dict:
    try:
        meta = json.loads(files.read("meta.json"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SplatFileError(path, f"meta.json is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise SplatFileError(path, "meta.json is not a JSON object")
    if meta.get("version") != VERSION:
        got = meta.get("version", "missing (SOG version 1)")
        raise SplatFileError(path, f"SOG version {got} is not supported: only version {VERSION}")
    for key in ("count", "means", "scales", "quats", "sh0"):
        if key not in meta:
            raise SplatFileError(path, f"meta.json has no {key!r}")
        if key != "count" and not isinstance(meta[key], dict):
            raise SplatFileError(path, f"meta.json {key} is not an object: {str(meta[key])[:60]}")
    if meta.get("shN") is not None and not isinstance(meta["shN"], dict):
        raise SplatFileError(path, f"meta.json shN is not an object: {str(meta['shN'])[:60]}")
    if not isinstance(meta["count"], int) or isinstance(meta["count"], bool) or meta["count"] <= 0:
        raise SplatFileError(path, f"meta.json count {meta['count']!r} is not a positive integer")
    return meta


def _field(path, meta: dict, key: str, sub: str, length: int | None = None) -> list:
    value = meta[key].get(sub) if isinstance(meta[key], dict) else None
    if not isinstance(value, list) or (length is not None and len(value) != length):
        want = f"a list of {length}" if length else "a list"
        raise SplatFileError(path, f"meta.json {key}.{sub} is not {want}: {str(value)[:60]}")
    return value


def _numbers(path, meta: dict, key: str, sub: str, length: int) -> np.ndarray:
    values = _field(path, meta, key, sub, length)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise SplatFileError(path, f"meta.json {key}.{sub} holds values that are not numbers")
    out = np.asarray(values, np.float64)
    if not np.isfinite(out).all():
        raise SplatFileError(path, f"meta.json {key}.{sub} has non-finite values")
    return out


def _codebook(path, meta: dict, key: str) -> np.ndarray:
    return _numbers(path, meta, key, "codebook", 256)


# ---------------------------------------------------------------------------------------------- read
def read_sog(path: str | os.PathLike, check_finite: bool = True) -> SplatArrays:
    """Read a bundled `.sog` or an unbundled SOG (its meta.json, or the folder holding it)."""
    files = _Files(path)
    meta = _meta(path, files)
    n = meta["count"]
    shape: list[tuple[int, int]] = []

    def image(key: str, index: int) -> np.ndarray:  # [N, 4] pixels of Gaussians 0..N-1
        files_list = _field(path, meta, key, "files")
        name = files_list[index] if index < len(files_list) else None
        if not isinstance(name, str):
            raise SplatFileError(path, f"meta.json {key}.files has no entry {index}")
        px = _decode_webp(path, name, files.read(name))
        h, w = px.shape[:2]
        if w * h < n:
            raise SplatFileError(path, f"{name} is {w}x{h} = {w * h} pixels, fewer than count {n}")
        if shape and (h, w) != shape[0]:
            raise SplatFileError(path, f"{name} is {w}x{h}, the other images are {shape[0][1]}x{shape[0][0]}")
        shape.append((h, w))
        return px.reshape(-1, 4)[:n]

    lo, hi = image("means", 0), image("means", 1)
    mins = _numbers(path, meta, "means", "mins", 3)
    maxs = _numbers(path, meta, "means", "maxs", 3)
    q = (hi[:, :3].astype(np.float64) * 256.0 + lo[:, :3]) / 65535.0
    t = mins + (maxs - mins) * q
    means = (np.sign(t) * np.expm1(np.abs(t))).astype(np.float32)

    quats = _decode_quats(path, image("quats", 0))
    scale_book = _codebook(path, meta, "scales")
    log_scales = scale_book[image("scales", 0)[:, :3]].astype(np.float32)
    sh0 = image("sh0", 0)
    k = 1
    rest = None
    if meta.get("shN"):
        rest = _read_shn(path, meta, files, image("shN", 1), n)
        k = rest.shape[1] + 1
    sh = np.empty((n, k, 3), np.float32)
    sh[:, 0] = _codebook(path, meta, "sh0")[sh0[:, :3]]
    if rest is not None:
        sh[:, 1:] = rest
    arrays = SplatArrays(means, quats, log_scales, logit(sh0[:, 3] / 255.0), sh)
    arrays.meta["antialiased"] = bool(meta.get("antialias", False))
    return check_decoded(path, arrays) if check_finite else arrays


def _decode_quats(path, px: np.ndarray) -> np.ndarray:
    tag = px[:, 3].astype(np.int64)
    bad = np.count_nonzero((tag < 252) | (tag > 255))
    if bad:
        raise SplatFileError(path, f"quats image: {bad} Gaussians have an alpha (mode) outside 252..255")
    largest = tag - 252
    stored = (px[:, :3].astype(np.float64) / 255.0 - 0.5) * SQRT2  # [N, 3]
    n = px.shape[0]
    q = np.empty((n, 4), np.float64)
    for j in range(4):
        q[:, j] = stored[np.arange(n), np.clip(j - (j > largest), 0, 2)]
    q[np.arange(n), largest] = 0.0
    q[np.arange(n), largest] = np.sqrt(np.maximum(0.0, 1.0 - (q * q).sum(axis=1)))
    return q.astype(np.float32)


def _read_shn(path, meta: dict, files: _Files, labels_px: np.ndarray, n: int) -> np.ndarray:
    """[N, coeffs, 3] higher-order SH from the palette."""
    shn = meta["shN"]
    bands, count = shn.get("bands"), shn.get("count")
    if bands not in SH_COEFFS:
        raise SplatFileError(path, f"meta.json shN.bands {bands!r} is not 1, 2 or 3")
    if not isinstance(count, int) or not 1 <= count <= PALETTE_MAX:
        raise SplatFileError(path, f"meta.json shN.count {count!r} is not 1..{PALETTE_MAX}")
    coeffs = SH_COEFFS[bands]
    book = _codebook(path, meta, "shN")
    name = _field(path, meta, "shN", "files", 2)[0]
    if not isinstance(name, str):
        raise SplatFileError(path, f"meta.json shN.files[0] is not a file name: {name!r}")
    cent = _decode_webp(path, name, files.read(name))
    rows = -(-count // 64)
    if cent.shape[1] != 64 * coeffs or cent.shape[0] < rows:
        raise SplatFileError(
            path,
            f"{name} is {cent.shape[1]}x{cent.shape[0]}; {count} entries of {bands} bands need "
            f"{64 * coeffs}x{rows}",
        )
    entries = cent[:rows, :, :3].reshape(rows * 64, coeffs, 3)[:count]  # [count, coeffs, 3] byte indices
    labels = labels_px[:, 0].astype(np.int64) | (labels_px[:, 1].astype(np.int64) << 8)
    over = np.count_nonzero(labels >= count)
    if over:
        raise SplatFileError(path, f"shN labels: {over} Gaussians point past the {count}-entry palette")
    return book[entries].astype(np.float32)[labels]


# ---------------------------------------------------------------------------------------------- write
def _encode_webp(path, rgba: np.ndarray) -> bytes:
    image_mod = optional_module(path, "PIL.Image", "writing SOG images (WebP)", package="pillow")
    out = io.BytesIO()
    # exact=True: keep RGB under alpha 0 (sh0's alpha is the opacity); lossless: the values are indices
    image_mod.fromarray(np.ascontiguousarray(rgba), "RGBA").save(
        out, format="WEBP", lossless=True, exact=True, quality=50, method=4
    )
    return out.getvalue()


def _grid(values: np.ndarray, width: int, height: int) -> np.ndarray:
    """[N, 4] uint8 -> [H, W, 4] image, trailing pixels zero."""
    img = np.zeros((width * height, 4), np.uint8)
    img[: values.shape[0]] = values
    return img.reshape(height, width, 4)


def _encode_quats(quats: np.ndarray) -> np.ndarray:
    q = unit_quats(quats)
    n = q.shape[0]
    rows = np.arange(n)
    largest = np.argmax(np.abs(q), axis=1)
    q = np.where(q[rows, largest][:, None] < 0, -q, q)
    px = np.empty((n, 4), np.uint8)
    for slot in range(3):
        j = slot + (slot >= largest)  # the slot-th stored component skips the largest
        c = q[rows, j]
        px[:, slot] = np.clip(np.rint((c / SQRT2 + 0.5) * 255.0), 0, 255)
    px[:, 3] = 252 + largest
    return px


def sog_files(arrays: SplatArrays, path=None) -> dict[str, bytes]:
    """The files of a SOG for `arrays`: {"meta.json": ..., "means_l.webp": ..., ...}."""
    n = arrays.num_gaussians
    width = int(np.ceil(np.sqrt(n)))
    height = -(-n // width)
    m = arrays.means.astype(np.float64)
    t = np.sign(m) * np.log1p(np.abs(m))
    mins, maxs = t.min(axis=0), t.max(axis=0)
    span = np.where(maxs > mins, maxs - mins, 1.0)
    q = np.rint((t - mins) / span * 65535.0).astype(np.int64)
    ones = np.full((n, 1), 255, np.uint8)
    lo = np.concatenate([(q & 0xFF).astype(np.uint8), ones], axis=1)
    hi = np.concatenate([(q >> 8).astype(np.uint8), ones], axis=1)

    scale_book, scale_idx = kmeans_1d(arrays.log_scales.reshape(-1))
    dc_book, dc_idx = kmeans_1d(arrays.sh[:, 0].reshape(-1))
    alpha = np.clip(np.rint(sigmoid(arrays.opacity_logits) * 255.0), 0, 255).astype(np.uint8)[:, None]
    images = {
        "means_l.webp": _grid(lo, width, height),
        "means_u.webp": _grid(hi, width, height),
        "quats.webp": _grid(_encode_quats(arrays.quats), width, height),
        "scales.webp": _grid(np.concatenate([scale_idx.reshape(n, 3), ones], axis=1), width, height),
        "sh0.webp": _grid(np.concatenate([dc_idx.reshape(n, 3), alpha], axis=1), width, height),
    }
    meta = {
        "version": VERSION,
        "asset": {"generator": "splatbrush"},
        "count": n,
        "antialias": bool(arrays.meta.get("antialiased", False)),
        "means": {"mins": mins.tolist(), "maxs": maxs.tolist(), "files": ["means_l.webp", "means_u.webp"]},
        "scales": {"codebook": scale_book.tolist(), "files": ["scales.webp"]},
        "quats": {"files": ["quats.webp"]},
        "sh0": {"codebook": dc_book.tolist(), "files": ["sh0.webp"]},
    }
    if arrays.sh_degree > 0:
        coeffs = arrays.sh.shape[1] - 1
        entries, labels = palette(arrays.sh[:, 1:].reshape(n, coeffs * 3), PALETTE_MAX)
        count = entries.shape[0]
        book, idx = kmeans_1d(entries.reshape(-1))
        rows = -(-count // 64)
        cent = np.zeros((rows * 64, coeffs, 4), np.uint8)
        cent[:count, :, :3] = idx.reshape(count, coeffs, 3)
        cent[:, :, 3] = 255
        lab = np.zeros((n, 4), np.uint8)
        lab[:, 0], lab[:, 1], lab[:, 3] = labels & 0xFF, labels >> 8, 255
        images["shN_centroids.webp"] = cent.reshape(rows, 64 * coeffs, 4)
        images["shN_labels.webp"] = _grid(lab, width, height)
        meta["shN"] = {
            "count": int(count),
            "bands": arrays.sh_degree,
            "codebook": book.tolist(),
            "files": ["shN_centroids.webp", "shN_labels.webp"],
        }
    out = {"meta.json": json.dumps(meta, separators=(",", ":")).encode()}
    out.update({name: _encode_webp(path, img) for name, img in images.items()})
    return out


def write_sog(arrays: SplatArrays, path: str | os.PathLike) -> None:
    """Write a bundled `.sog` zip, or, when `path` is a meta.json, an unbundled SOG beside it. Extras are
    dropped (SOG has none)."""
    checked(arrays, path)
    files = sog_files(arrays, path)
    p = os.fspath(path)
    if os.path.basename(p).lower() == "meta.json":
        folder = os.path.dirname(os.path.abspath(p))
        if not os.path.isdir(folder):
            raise SplatFileError(path, f"output folder {folder} does not exist")
        for name, data in files.items():  # meta.json last: a reader never sees it before its images
            if name != "meta.json":
                with atomic_output(os.path.join(folder, name)) as f:
                    f.write(data)
        with atomic_output(p) as f:
            f.write(files["meta.json"])
        return
    with atomic_output(p) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        for name, data in files.items():
            z.writestr(name, data)
