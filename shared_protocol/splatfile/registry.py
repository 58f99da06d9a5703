"""The splat file format registry: one `SplatFormat` per format (reader, writer, extensions, magic sniffer).

    from shared_protocol.splatfile.registry import SPLAT_FORMATS, register_format, format_for_path

Reading looks at the file's first bytes first ("ply" header, "NGSP"/gzip for .spz, "glTF" for .glb, a zip for
.sog, a meta.json or a folder holding one for unbundled SOG), then at the extension (.splat has no magic).
Writing goes by the output path's extension (longest match: ".compressed.ply" before ".ply"; a path named
meta.json is an unbundled SOG). Readers and writers are imported lazily, so importing this is cheap.
"""

from __future__ import annotations

import importlib
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import SplatFileError

SNIFF_BYTES = 1 << 16
MALFORMED = (
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    EOFError,
    OverflowError,
    struct.error,
    zlib.error,
)
"""What decoding a malformed file can raise beyond the readers' own checks (numpy, struct, json, zlib)."""


@dataclass(frozen=True)
class SplatFormat:
    name: str
    """Registry key, e.g. "spz"; also what `detect_format` returns."""
    description: str
    """Human name for messages and `splatbrush info`, e.g. "Niantic .spz"."""
    extensions: tuple[str, ...]
    """Lower-case file name endings, most specific first, e.g. (".spz",)."""
    reader: str | None
    """"module:function" of `read(path, check_finite=True) -> SplatArrays`, or None (cannot read)."""
    writer: str | None
    """"module:function" of `write(arrays, path, **options)`, or None (cannot write)."""
    sniff: Callable[[bytes, str], bool] | None = None
    """True when the file's first bytes (and path) are this format's; None: by extension only."""
    lossless: bool = False
    """A write -> read round trip is bit-exact."""
    write_options: tuple[str, ...] = ()
    """Keyword options the writer takes (e.g. "version" for .spz)."""
    notes: str = ""
    """What writing this format drops or quantises (shown by `splatbrush convert`)."""
    names: tuple[str, ...] = field(default=())
    """Whole file names (not endings) that mean this format, e.g. ("meta.json",)."""

    def _load(self, spec: str | None, what: str, path) -> Callable:
        if spec is None:
            can = [
                f.description for f in SPLAT_FORMATS.values() if (f.writer if what == "write" else f.reader)
            ]
            raise SplatFileError(path, f"cannot {what} {self.description}: {what} one of {', '.join(can)}")
        module, func = spec.split(":")
        return getattr(importlib.import_module(module, __package__), func)

    def read(self, path, **kwargs):
        reader = self._load(self.reader, "read", path)
        try:
            return reader(path, **kwargs)
        except SplatFileError:
            raise
        except MALFORMED as e:  # a case no reader check foresaw: still one error naming the file
            detail = f"{type(e).__name__}: {e}"[:200]
            raise SplatFileError(path, f"malformed {self.description} file ({detail})") from None

    def write(self, arrays, path, **options):
        unknown = sorted(set(options) - set(self.write_options))
        if unknown:
            raise SplatFileError(
                path,
                f"{self.description} has no write option {unknown[0]!r} "
                f"(it takes {self.write_options or 'none'})",
            )
        return self._load(self.writer, "write", path)(arrays, path, **options)


SPLAT_FORMATS: dict[str, SplatFormat] = {}


def register_format(fmt: SplatFormat) -> SplatFormat:
    """Add (or replace) a format; sniffers run in registration order."""
    SPLAT_FORMATS[fmt.name] = fmt
    return fmt


def _ext_match(name: str, readable: bool) -> SplatFormat | None:
    base = os.path.basename(name).lower()
    best, best_len = None, 0
    for fmt in SPLAT_FORMATS.values():
        if (fmt.reader if readable else fmt.writer) is None:
            continue
        if base in fmt.names:
            return fmt
        for ext in fmt.extensions:
            if base.endswith(ext) and len(ext) > best_len:
                best, best_len = fmt, len(ext)
    return best


def read_extensions() -> tuple[str, ...]:
    return tuple(e for f in SPLAT_FORMATS.values() if f.reader for e in f.extensions)


def write_extensions() -> tuple[str, ...]:
    return tuple(e for f in SPLAT_FORMATS.values() if f.writer for e in f.extensions)


def read_names() -> tuple[str, ...]:
    return tuple(n for f in SPLAT_FORMATS.values() if f.reader for n in f.names)


def _head(path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(SNIFF_BYTES)
    except FileNotFoundError:
        raise SplatFileError(path, "file not found") from None
    except IsADirectoryError:
        raise SplatFileError(
            path, "is a directory, not a splat file (an unbundled SOG folder needs a meta.json)"
        ) from None
    except OSError as e:
        raise SplatFileError(path, f"cannot read: {e.strerror or e}") from None


def sniff_format(path: str | os.PathLike) -> SplatFormat:
    """The format of an existing file (or unbundled SOG folder): magic bytes first, then the extension."""
    p = os.fspath(path)
    if os.path.isdir(p):
        if "sog" in SPLAT_FORMATS and os.path.isfile(os.path.join(p, "meta.json")):
            return SPLAT_FORMATS["sog"]
    head = _head(p)
    for fmt in SPLAT_FORMATS.values():
        if fmt.reader and fmt.sniff is not None and fmt.sniff(head, p):
            return fmt
    by_ext = _ext_match(p, readable=True)
    if by_ext is not None and by_ext.sniff is None:
        return by_ext
    if by_ext is not None:
        raise SplatFileError(
            path,
            f"{by_ext.description} expected from the extension, but the file starts with {head[:12]!r}, "
            "which is not that format's",
        )
    ext = os.path.splitext(p)[1].lower() or "(none)"
    raise SplatFileError(
        path,
        f"unknown splat file type {ext}: expected {', '.join(read_extensions() + read_names())} "
        "(or a file whose first bytes name its format)",
    )


def format_for_output(path: str | os.PathLike) -> SplatFormat:
    """The format an output path asks for, by its extension; SplatFileError when none can be written."""
    fmt = _ext_match(os.fspath(path), readable=False)
    if fmt is not None:
        return fmt
    readable = _ext_match(os.fspath(path), readable=True)
    if readable is not None:
        raise SplatFileError(
            path,
            f"writing {readable.description} is not supported: write one of {', '.join(write_extensions())}",
        )
    ext = os.path.splitext(os.fspath(path))[1].lower() or "(none)"
    raise SplatFileError(path, f"cannot write a {ext} file: use one of {', '.join(write_extensions())}")


# ---------------------------------------------------------------------------------------------- built-ins
def _is_ply(head: bytes, path: str) -> bool:
    return head[:4] in (b"ply\n", b"ply\r")


def _is_compressed_ply(head: bytes, path: str) -> bool:
    if not _is_ply(head, path) or b"element chunk" not in head:
        return False
    from .compressed_ply import is_compressed_ply_header
    from .ply_header import read_ply_header

    return is_compressed_ply_header(read_ply_header(path))


def _is_spz(head: bytes, path: str) -> bool:
    return head[:4] == b"NGSP" or head[:2] == b"\x1f\x8b"


def _json_head(head: bytes) -> bytes | None:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text if text[:1] == b"{" else None


def _is_gltf(head: bytes, path: str) -> bool:
    if head[:4] == b"glTF":
        return True
    text = _json_head(head)
    return text is not None and b'"asset"' in text and b'"means"' not in text and b'"meshes"' in text


def _is_sog(head: bytes, path: str) -> bool:
    if head[:4] == b"PK\x03\x04":  # a zip: a .sog, or any zip holding a meta.json (not e.g. an .npz)
        if path.lower().endswith(".sog"):
            return True
        import zipfile

        try:
            with zipfile.ZipFile(path) as z:
                return "meta.json" in z.namelist()
        except (zipfile.BadZipFile, OSError, NotImplementedError):
            return False
    text = _json_head(head)
    return text is not None and b'"means"' in text and b'"sh0"' in text


_BUILTIN = (
    SplatFormat(
        "compressed_ply",
        "PlayCanvas compressed .ply",
        (".compressed.ply",),
        ".compressed_ply:read_compressed_ply",
        ".compressed_ply:write_compressed_ply",
        _is_compressed_ply,
        write_options=("morton",),
        notes="quantised in 256-splat chunks (positions 11/10/11 bits, colour and opacity 8 bits); Gaussians "
        "are reordered along a z-curve; extras dropped",
    ),
    SplatFormat("ply", "INRIA .ply", (".ply",), ".ply:read_ply", ".ply:write_ply", _is_ply, lossless=True),
    SplatFormat(
        "spz",
        "Niantic .spz",
        (".spz",),
        ".spz:read_spz",
        ".spz:write_spz",
        _is_spz,
        write_options=("version", "axes", "sh1_bits", "sh_rest_bits", "zstd_level"),
        notes="quantised: positions 24-bit fixed point, scales/colour/opacity 8 bits, SH 4-5 bits; "
        "extras dropped",
    ),
    SplatFormat(
        "gltf",
        "glTF KHR_gaussian_splatting",
        (".glb", ".gltf"),
        ".gltf:read_gltf",
        ".gltf:write_gltf",
        _is_gltf,
        lossless=True,
        write_options=("exact",),
        notes="float32 linear scales and opacities, unit quaternions (raw values kept in _SPLATBRUSH_* "
        "attributes: bit-exact read back); extras dropped",
    ),
    SplatFormat(
        "sog",
        "PlayCanvas SOG",
        (".sog",),
        ".sog:read_sog",
        ".sog:write_sog",
        _is_sog,
        notes="quantised: 16-bit log positions, 8-bit rotations, 256-entry codebooks for scales and colour, "
        "an SH palette of at most 65,536 entries; extras dropped",
        names=("meta.json",),
    ),
    SplatFormat(
        "splat",
        "antimatter15 .splat",
        (".splat",),
        ".splat:read_splat",
        ".splat:write_splat",
        None,
        notes="SH degree 0 only; colour, opacity and rotation 8 bits; extras dropped",
    ),
)
for _fmt in _BUILTIN:
    register_format(_fmt)
