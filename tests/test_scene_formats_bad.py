"""Every bad-file case of every format gives one SceneFormatError (SplatFileError underneath) that names the
file and the problem, never a traceback: truncated streams, wrong magic/version, counts that lie, a zip
without meta.json, WebP size mismatches, glTF without the extension, accessors out of range, ...

Each case starts from a good file our writer made, breaks one thing, and reads it through `load_scene`."""

from __future__ import annotations

import gzip
import io
import json
import re
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from engine.scene import SceneFormatError, load_scene
from shared_protocol.splatfile import SplatArrays, SplatFileError, read_splats, write_splats

pytest.importorskip("PIL")
pytest.importorskip("zstandard")


def good_arrays(n: int = 40, deg: int = 1, seed: int = 3) -> SplatArrays:
    rng = np.random.default_rng(seed)
    return SplatArrays(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        log_scales=rng.normal(-3, 0.5, size=(n, 3)).astype(np.float32),
        opacity_logits=rng.normal(size=n).astype(np.float32),
        sh=(rng.normal(size=(n, (deg + 1) ** 2, 3)) * 0.3).astype(np.float32),
    )


def written(tmp: Path, name: str, **options) -> Path:
    path = tmp / name
    write_splats(good_arrays(), path, **options)
    return path


def replace(path: Path, data: bytes, name: str | None = None) -> Path:
    out = path if name is None else path.with_name(name)
    out.write_bytes(data)
    return out


def cut(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    return replace(path, data[: int(len(data) * keep)])


# ---------------------------------------------------------------------------------------------- .spz
def spz_legacy(tmp: Path, change: Callable[[bytearray], None]) -> Path:
    """A v3 .spz whose gunzipped bytes went through `change`."""
    path = written(tmp, "s.spz", version=3)
    raw = bytearray(gzip.decompress(path.read_bytes()))
    change(raw)
    return replace(path, gzip.compress(bytes(raw)))


def spz_v4(tmp: Path, change: Callable[[bytearray], None]) -> Path:
    path = written(tmp, "s.spz", version=4)
    raw = bytearray(path.read_bytes())
    change(raw)
    return replace(path, bytes(raw))


def put(offset: int, fmt: str, value) -> Callable[[bytearray], None]:
    return lambda raw: struct.pack_into(fmt, raw, offset, value)


def spz_cases() -> dict[str, tuple[Callable[[Path], Path], str]]:
    return {
        "spz-truncated-gzip": (lambda t: cut(written(t, "s.spz", version=3)), "truncated"),
        "spz-truncated-v4": (lambda t: cut(written(t, "s.spz", version=4), 0.8), "truncated|past the end"),
        "spz-not-gzip-nor-ngsp": (lambda t: replace(t / "s.spz", b"\x00" * 64), "not an .spz|starts with"),
        "spz-wrong-magic-in-gzip": (lambda t: spz_legacy(t, put(0, "<I", 0x12345678)), "magic"),
        "spz-wrong-version-legacy": (lambda t: spz_legacy(t, put(4, "<I", 9)), "version 9"),
        "spz-wrong-version-v4": (lambda t: spz_v4(t, put(4, "<I", 7)), "version 7"),
        "spz-count-too-large": (lambda t: spz_legacy(t, put(8, "<I", 41)), "truncated|point count"),
        "spz-count-too-small": (lambda t: spz_legacy(t, put(8, "<I", 39)), "point count"),
        "spz-count-zero": (lambda t: spz_legacy(t, put(8, "<I", 0)), "0 points"),
        "spz-count-lies-v4": (lambda t: spz_v4(t, put(8, "<I", 41)), r"unpacks to|need"),
        "spz-sh-degree-bad": (lambda t: spz_legacy(t, put(12, "<B", 7)), "SH degree 7"),
        "spz-stream-count-v4": (lambda t: spz_v4(t, put(15, "<B", 3)), "streams"),
        "spz-toc-outside-v4": (lambda t: spz_v4(t, put(16, "<I", 1 << 30)), "table of contents"),
        "spz-corrupt-zstd-v4": (lambda t: spz_v4(t, put(32 + 16 * 6, "<I", 0xDEADBEEF)), "zstd"),
        "spz-trailing-bytes-v4": (lambda t: spz_v4(t, lambda r: r.extend(b"junk")), "after its last stream"),
        "spz-header-only": (lambda t: replace(t / "s.spz", b"NGSP\x04\x00"), "too short|header"),
        "spz-empty-gzip": (lambda t: replace(t / "s.spz", gzip.compress(b"NGSP")), "too short|header"),
    }


# ---------------------------------------------------------------------------------------------- SOG
def sog_members(tmp: Path) -> dict[str, bytes]:
    path = written(tmp, "g.sog")
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def sog_zip(tmp: Path, change: Callable[[dict], None], name: str = "g.sog") -> Path:
    members = sog_members(tmp)
    change(members)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for member, data in members.items():
            z.writestr(member, data)
    return replace(tmp / name, out.getvalue())


def meta_edit(edit: Callable[[dict], None]) -> Callable[[dict], None]:
    def change(members: dict) -> None:
        meta = json.loads(members["meta.json"])
        edit(meta)
        members["meta.json"] = json.dumps(meta).encode()

    return change


def webp(rgba: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(out, format="WEBP", lossless=True)
    return out.getvalue()


def sog_folder(tmp: Path, drop: str) -> Path:
    folder = tmp / "unbundled"
    folder.mkdir()
    for name, data in sog_members(tmp).items():
        if name != drop:
            (folder / name).write_bytes(data)
    return folder


def setitem(key: str, value) -> Callable[[dict], None]:
    return lambda d: d.__setitem__(key, value)


def sog_cases() -> dict[str, tuple[Callable[[Path], Path], str]]:
    small = webp(np.zeros((3, 3, 4), np.uint8))
    bad_quats = webp(np.full((6, 7, 4), 17, np.uint8))  # 40 Gaussians: 7 x 6 images
    return {
        "sog-zip-without-meta": (lambda t: sog_zip(t, lambda m: m.pop("meta.json")), "meta.json"),
        "sog-truncated-zip": (lambda t: cut(written(t, "g.sog")), "zip"),
        "sog-not-a-zip": (lambda t: replace(t / "g.sog", b"PK\x03\x04" + b"\x00" * 100), "zip"),
        "sog-meta-not-json": (lambda t: sog_zip(t, setitem("meta.json", b"{nope")), "JSON"),
        "sog-meta-not-object": (lambda t: sog_zip(t, setitem("meta.json", b"[1, 2]")), "JSON object"),
        "sog-version-1": (lambda t: sog_zip(t, meta_edit(lambda m: m.pop("version"))), "version"),
        "sog-version-3": (lambda t: sog_zip(t, meta_edit(setitem("version", 3))), "version 3"),
        "sog-count-lies": (lambda t: sog_zip(t, meta_edit(setitem("count", 10_000))), "count|pixels"),
        "sog-count-not-int": (lambda t: sog_zip(t, meta_edit(setitem("count", "many"))), "count"),
        "sog-webp-size-mismatch": (lambda t: sog_zip(t, setitem("scales.webp", small)), r"3x3|pixels"),
        "sog-image-not-webp": (lambda t: sog_zip(t, setitem("quats.webp", b"RIFF0000WEBPjunk")), "image"),
        "sog-missing-image": (lambda t: sog_zip(t, lambda m: m.pop("sh0.webp")), "sh0.webp"),
        "sog-quats-mode-bad": (lambda t: sog_zip(t, setitem("quats.webp", bad_quats)), "252"),
        "sog-means-not-object": (lambda t: sog_zip(t, meta_edit(setitem("means", 5))), "means"),
        "sog-files-not-list": (
            lambda t: sog_zip(t, meta_edit(lambda m: m["quats"].__setitem__("files", "quats.webp"))),
            "quats.files",
        ),
        "sog-codebook-short": (
            lambda t: sog_zip(t, meta_edit(lambda m: m["scales"].__setitem__("codebook", [1.0]))),
            "codebook",
        ),
        "sog-mins-not-numbers": (
            lambda t: sog_zip(t, meta_edit(lambda m: m["means"].__setitem__("mins", ["a", "b", "c"]))),
            "mins",
        ),
        "sog-palette-count-lies": (
            lambda t: sog_zip(t, meta_edit(lambda m: m["shN"].__setitem__("count", 1))),
            "palette|entries",
        ),
        "sog-shn-bands-bad": (
            lambda t: sog_zip(t, meta_edit(lambda m: m["shN"].__setitem__("bands", 9))),
            "bands",
        ),
        "sog-folder-missing-image": (lambda t: sog_folder(t, "means_u.webp"), "means_u.webp"),
        "sog-folder-without-meta": (lambda t: sog_folder(t, "meta.json"), "meta.json|directory"),
    }


# ---------------------------------------------------------------------------------------------- glTF
def glb_parts(tmp: Path) -> tuple[dict, bytes]:
    data = written(tmp, "g.glb").read_bytes()
    size = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20 : 20 + size])
    return doc, data[20 + size + 8 :]


def glb(tmp: Path, edit: Callable[[dict], None]) -> Path:
    doc, blob = glb_parts(tmp)
    edit(doc)
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(blob), 0x004E4942) + blob
    return replace(tmp / "g.glb", struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body)


def gltf_text(tmp: Path, text: bytes) -> Path:
    return replace(tmp / "g.gltf", text)


def prim(doc: dict) -> dict:
    return doc["meshes"][0]["primitives"][0]


def attr(name: str) -> str:
    return "KHR_gaussian_splatting:" + name


def gltf_cases() -> dict[str, tuple[Callable[[Path], Path], str]]:
    plain = {"asset": {"version": "2.0"}, "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}]}
    return {
        "glb-truncated": (lambda t: cut(written(t, "g.glb")), "truncated"),
        "glb-wrong-version": (lambda t: spz_like_put(written(t, "g.glb"), 4, 1), "version 1"),
        "glb-bad-magic": (lambda t: spz_like_put(written(t, "g.glb"), 0, 0x4E4F4E45), "glTF|starts with"),
        "glb-tiny": (lambda t: replace(t / "g.glb", b"glTF\x02\x00"), "truncated"),
        "glb-no-extension": (lambda t: glb(t, lambda d: prim(d).pop("extensions")), "KHR_gaussian_splatting"),
        "gltf-mesh-only": (lambda t: gltf_text(t, json.dumps(plain).encode()), "KHR_gaussian_splatting"),
        "gltf-bad-json": (lambda t: gltf_text(t, b'{"asset": {"version": "2.0"}, "meshes": ['), "JSON|glTF"),
        "gltf-version-1": (lambda t: gltf_text(t, b'{"asset": {"version": "1.0"}, "meshes": []}'), "2.0"),
        "glb-accessor-out-of-range": (
            lambda t: glb(t, lambda d: d["accessors"][2].__setitem__("count", 10_000)),
            "past its bufferView|reaches byte",
        ),
        "glb-accessor-offset-out-of-range": (
            lambda t: glb(t, lambda d: d["accessors"][0].__setitem__("byteOffset", 1 << 20)),
            "past its bufferView|reaches byte",
        ),
        "glb-accessor-missing": (
            lambda t: glb(t, lambda d: prim(d)["attributes"].__setitem__("POSITION", 99)),
            "accessor 99",
        ),
        "glb-bufferview-missing": (
            lambda t: glb(t, lambda d: d["accessors"][1].__setitem__("bufferView", 42)),
            "bufferView 42",
        ),
        "glb-buffer-missing": (
            lambda t: glb(t, lambda d: d["bufferViews"][0].__setitem__("buffer", 3)),
            "buffer 3",
        ),
        "glb-counts-disagree": (
            lambda t: glb(t, lambda d: d["accessors"][3].__setitem__("count", 20)),
            "values for 40 positions",
        ),
        "glb-attribute-missing": (
            lambda t: glb(t, lambda d: prim(d)["attributes"].pop(attr("SCALE"))),
            "missing attributes",
        ),
        "glb-mode-triangles": (lambda t: glb(t, lambda d: prim(d).__setitem__("mode", 4)), "POINTS"),
        "glb-wrong-component-type": (
            lambda t: glb(t, lambda d: d["accessors"][1].__setitem__("componentType", 5125)),
            "component type|componentType",
        ),
        "glb-byte-length-lies": (
            lambda t: glb(t, lambda d: d["buffers"][0].__setitem__("byteLength", 1 << 24)),
            "byteLength",
        ),
        "glb-required-extension": (
            lambda t: glb(t, lambda d: d.__setitem__("extensionsRequired", ["KHR_draco_mesh_compression"])),
            "requires extensions",
        ),
        "glb-meshes-not-list": (lambda t: glb(t, lambda d: d.__setitem__("meshes", {"a": 1})), "meshes"),
        "glb-attributes-not-object": (
            lambda t: glb(t, lambda d: prim(d).__setitem__("attributes", [0])),
            "attributes",
        ),
        "glb-accessor-index-string": (
            lambda t: glb(t, lambda d: prim(d)["attributes"].__setitem__("POSITION", "zero")),
            "accessor",
        ),
        "gltf-external-buffer-missing": (
            lambda t: gltf_text(t, gltf_with_uri(t, "missing.bin")),
            "missing.bin",
        ),
        "gltf-bad-base64": (
            lambda t: gltf_text(t, gltf_with_uri(t, "data:application/octet-stream;base64,@@")),
            "base64",
        ),
    }


def spz_like_put(path: Path, offset: int, value: int) -> Path:
    raw = bytearray(path.read_bytes())
    struct.pack_into("<I", raw, offset, value)
    return replace(path, bytes(raw))


def gltf_with_uri(tmp: Path, uri: str) -> bytes:
    doc, _ = glb_parts(tmp)
    doc["buffers"][0]["uri"] = uri
    return json.dumps(doc).encode()


# ---------------------------------------------------------------------------------------------- ply family
def ply_cases() -> dict[str, tuple[Callable[[Path], Path], str]]:
    def header_edit(t: Path, old: bytes, new: bytes, name: str = "p.ply") -> Path:
        path = written(t, name)
        return replace(path, path.read_bytes().replace(old, new, 1))

    return {
        "ply-truncated": (lambda t: cut(written(t, "p.ply")), "truncated"),
        "ply-no-end-header": (
            lambda t: replace(t / "p.ply", b"ply\nformat binary_little_endian 1.0\n"),
            "end_header",
        ),
        "ply-count-too-large": (lambda t: header_edit(t, b"vertex 40", b"vertex 41"), "truncated|count"),
        "ply-count-too-small": (lambda t: header_edit(t, b"vertex 40", b"vertex 39"), "count|bytes"),
        "ply-bad-format": (
            lambda t: header_edit(t, b"binary_little_endian", b"binary_middle_endian"),
            "format",
        ),
        "ply-missing-property": (
            lambda t: header_edit(t, b"property float opacity", b"property float opaque"),
            "opacity",
        ),
        "compressed-ply-truncated": (lambda t: cut(written(t, "c.compressed.ply"), 0.7), "truncated"),
        "compressed-ply-chunk-count-lies": (
            lambda t: header_edit(t, b"element chunk 1", b"element chunk 2", "c.compressed.ply"),
            "chunk|truncated",
        ),
        "ascii-ply-truncated": (lambda t: ascii_ply(t, cut_lines=3), "PLY body|truncated|ascii"),
        "splat-bad-size": (lambda t: replace(t / "s.splat", written(t, "s.splat").read_bytes()[:-5]), "32"),
        "splat-empty": (lambda t: replace(t / "s.splat", b""), "empty"),
    }


def ascii_ply(tmp: Path, cut_lines: int) -> Path:
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    names += [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    rows = np.random.default_rng(0).normal(size=(6, len(names)))
    head = [
        "ply",
        "format ascii 1.0",
        "element vertex 6",
        *[f"property float {n}" for n in names],
        "end_header",
    ]
    body = [" ".join(f"{v:.5f}" for v in r) for r in rows][:-cut_lines]
    return replace(tmp / "a.ply", ("\n".join(head + body) + "\n").encode())


CASES = {**spz_cases(), **sog_cases(), **gltf_cases(), **ply_cases()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_file_is_one_clear_error(tmp_path: Path, case: str) -> None:
    make, problem = CASES[case]
    path = make(tmp_path)
    with pytest.raises(SceneFormatError) as info:
        load_scene(path)
    err = info.value
    assert err.path is not None and Path(err.path).name == path.name, str(err)
    assert str(err).startswith(str(err.path)), str(err)
    assert path.name in str(err)
    assert re.search(problem, err.problem, re.IGNORECASE), f"{case}: {err.problem!r} lacks {problem!r}"
    assert "malformed" not in err.problem, f"{case}: only the registry's catch-all caught it: {err.problem}"
    assert err.__cause__ is None and err.__suppress_context__, "the error must not chain a traceback"
    with pytest.raises(SplatFileError):  # the same through the pure-numpy layer the add-on uses
        read_splats(path)


def test_every_format_has_bad_cases() -> None:
    prefixes = {case.split("-")[0] for case in CASES}
    assert {"spz", "sog", "glb", "gltf", "ply", "compressed", "splat"} <= prefixes


def test_unforeseen_decoding_errors_still_name_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared_protocol.splatfile import spz

    path = written(tmp_path, "s.spz")

    def broken(p, check_finite=True):
        raise IndexError("index 7 is out of bounds")

    monkeypatch.setattr(spz, "read_spz", broken)
    with pytest.raises(SceneFormatError, match=r"s\.spz: malformed Niantic \.spz file \(IndexError: index 7"):
        load_scene(path)


FUZZ_FILES = {"spz3": ("s.spz", {"version": 3}), "spz4": ("s.spz", {"version": 4}), "sog": ("g.sog", {})}
FUZZ_FILES.update({"glb": ("g.glb", {}), "ply": ("p.ply", {}), "cply": ("c.compressed.ply", {})})


@pytest.mark.parametrize("kind", sorted(FUZZ_FILES))
def test_mutated_files_never_raise_anything_else(tmp_path: Path, kind: str) -> None:
    """Random cuts and byte flips: each read either succeeds or raises SceneFormatError naming the file."""
    name, options = FUZZ_FILES[kind]
    good = written(tmp_path, name, **options).read_bytes()
    rng = np.random.default_rng(len(good))
    failures = 0
    for trial in range(60):
        data = bytearray(good)
        if trial % 3 == 0:
            data = data[: int(rng.integers(0, len(data)))]
        else:
            for at in rng.integers(0, len(data), size=int(rng.integers(1, 6))):
                data[at] = int(rng.integers(0, 256))
        path = replace(tmp_path / name, bytes(data))
        try:
            load_scene(path)
        except SceneFormatError as e:
            assert Path(e.path).name == name and e.__cause__ is None
            failures += 1
    assert failures > 0
