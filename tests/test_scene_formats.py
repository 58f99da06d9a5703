"""Splat files: INRIA/gsplat/Mip-Splatting .ply, PlayCanvas .compressed.ply, .splat; strict errors."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.scene import GaussianScene, SceneFormatError, load_scene, load_scene_with_extra, save_scene
from engine.scene.io import scene_from_arrays, scene_to_arrays
from shared_protocol.splatfile import (
    SplatArrays,
    SplatFileError,
    detect_format,
    read_splats,
    write_splats,
)
from shared_protocol.splatfile.ply import inria_property_names
from tests.conftest import make_random_scene

SH_C0 = 0.28209479177387814
FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")


def random_arrays(n: int = 50, deg: int = 0, seed: int = 0, normals: bool = False) -> SplatArrays:
    rng = np.random.default_rng(seed)
    k = (deg + 1) ** 2
    a = SplatArrays(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32) * 1.7,  # deliberately unnormalised
        log_scales=rng.normal(-3, 1, size=(n, 3)).astype(np.float32),
        opacity_logits=rng.normal(0, 2, size=n).astype(np.float32),
        sh=rng.normal(0, 0.8, size=(n, k, 3)).astype(np.float32),
    )
    if normals:
        for c in ("nx", "ny", "nz"):
            a.extra[c] = rng.normal(size=n).astype(np.float32)
    return a


def assert_bit_equal(a: SplatArrays, b: SplatArrays) -> None:
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype == np.float32, f
        assert x.shape == y.shape, f
        assert x.tobytes() == y.tobytes(), f"{f} differs"


def write_raw_ply(
    path: Path,
    names: list[str],
    data: np.ndarray,  # [N, P] float32
    fmt: str = "binary_little_endian",
    count: int | None = None,
    tail: bytes = b"",
    types: list[str] | None = None,
) -> Path:
    types = types or ["float"] * len(names)
    lines = ["ply", f"format {fmt} 1.0", f"element vertex {data.shape[0] if count is None else count}"]
    lines += [f"property {t} {n}" for t, n in zip(types, names, strict=True)]
    head = ("\n".join(lines) + "\nend_header\n").encode()
    body = data.astype(">f4" if fmt == "binary_big_endian" else "<f4").tobytes()
    path.write_bytes(head + body + tail)
    return path


# ------------------------------------------------------------------------------------------ real files
REAL = {
    "donut.ply": (45_624, 0, "ply", []),
    "inria_sh3_scene.ply": (9_080, 3, "ply", ["nx", "ny", "nz"]),
    "guitar.compressed.ply": (90_854, 0, "compressed_ply", []),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_files_read(shared_data: Path, name: str) -> None:
    n, deg, fmt, extra = REAL[name]
    path = shared_data / "scenes" / name
    a = read_splats(path)
    assert detect_format(path) == fmt
    assert a.num_gaussians == n and a.sh_degree == deg and list(a.extra) == extra
    a.check()


@pytest.mark.parametrize("name", ["donut.ply", "inria_sh3_scene.ply"])
def test_real_ply_rewrites_byte_identical(shared_data: Path, tmp_path: Path, name: str) -> None:
    src = shared_data / "scenes" / name
    a = read_splats(src)
    write_splats(a, tmp_path / "out.ply")
    assert (tmp_path / "out.ply").read_bytes() == src.read_bytes()


def test_real_inria_values_match_file_columns(shared_data: Path) -> None:
    """Cross-check the parsed arrays against the raw float columns (INRIA order, f_rest channel-major)."""
    path = shared_data / "scenes" / "inria_sh3_scene.ply"
    raw = path.read_bytes()
    start = raw.index(b"end_header\n") + len(b"end_header\n")
    cols = np.frombuffer(raw[start:], "<f4").reshape(9080, 62)
    a = read_splats(path)
    np.testing.assert_array_equal(a.means, cols[:, 0:3])
    np.testing.assert_array_equal(a.extra["nz"], cols[:, 5])
    np.testing.assert_array_equal(a.sh[:, 0, :], cols[:, 6:9])
    for c in range(3):
        for j in range(15):
            np.testing.assert_array_equal(a.sh[:, 1 + j, c], cols[:, 9 + c * 15 + j])
    np.testing.assert_array_equal(a.opacity_logits, cols[:, 54])
    np.testing.assert_array_equal(a.log_scales, cols[:, 55:58])
    np.testing.assert_array_equal(a.quats, cols[:, 58:62])  # unnormalised, kept as is
    assert not np.allclose(np.linalg.norm(a.quats, axis=1), 1.0)


def _decode_one_compressed(chunk: tuple[float, ...], packed: tuple[int, int, int, int]) -> dict:
    """Scalar decoder written from the format description, to check the vectorised one."""
    pos, rot, scl, col = packed

    def un(v: int, shift: int, bits: int) -> float:
        return ((v >> shift) & ((1 << bits) - 1)) / ((1 << bits) - 1)

    def lerp(a: float, b: float, t: float) -> float:
        return a * (1 - t) + b * t

    t3 = [un(pos, 21, 11), un(pos, 11, 10), un(pos, 0, 11)]
    means = [lerp(chunk[i], chunk[3 + i], t3[i]) for i in range(3)]
    s3 = [un(scl, 21, 11), un(scl, 11, 10), un(scl, 0, 11)]
    scales = [lerp(chunk[6 + i], chunk[9 + i], s3[i]) for i in range(3)]
    small = [(un(rot, s, 10) - 0.5) * 2**0.5 for s in (20, 10, 0)]
    big = max(0.0, 1 - sum(v * v for v in small)) ** 0.5
    which = rot >> 30
    q = small[:which] + [big] + small[which:]
    c = [un(col, 24, 8), un(col, 16, 8), un(col, 8, 8)]
    rgb = [lerp(chunk[12 + i], chunk[15 + i], c[i]) for i in range(3)] if len(chunk) == 18 else c
    return {"means": means, "log_scales": scales, "quats": q, "rgb": rgb, "alpha": un(col, 0, 8)}


def test_real_compressed_matches_scalar_decoder(shared_data: Path) -> None:
    path = shared_data / "scenes" / "guitar.compressed.ply"
    raw = path.read_bytes()
    start = raw.index(b"end_header\n") + len(b"end_header\n")
    chunks = np.frombuffer(raw, "<f4", count=355 * 18, offset=start).reshape(355, 18)
    packed = np.frombuffer(raw, "<u4", count=90_854 * 4, offset=start + 355 * 72).reshape(-1, 4)
    a = read_splats(path)
    for i in [0, 1, 255, 256, 40_000, 90_853]:
        ref = _decode_one_compressed(tuple(map(float, chunks[i // 256])), tuple(map(int, packed[i])))
        np.testing.assert_allclose(a.means[i], ref["means"], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(a.log_scales[i], ref["log_scales"], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(a.quats[i], ref["quats"], atol=1e-6)
        np.testing.assert_allclose(a.sh[i, 0] * SH_C0 + 0.5, ref["rgb"], atol=1e-6)
        alpha = min(max(ref["alpha"], 1e-6), 1 - 1e-6)
        np.testing.assert_allclose(a.opacity_logits[i], np.log(alpha / (1 - alpha)), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(a.quats, axis=1), 1.0, atol=1e-5)
    box_lo, box_hi = np.repeat(chunks[:, 0:3], 256, 0)[:90_854], np.repeat(chunks[:, 3:6], 256, 0)[:90_854]
    assert (a.means >= box_lo - 1e-5).all() and (a.means <= box_hi + 1e-5).all()


def test_real_compressed_converts_to_ply_and_splat_exactly(shared_data: Path, tmp_path: Path) -> None:
    a = read_splats(shared_data / "scenes" / "guitar.compressed.ply")
    write_splats(a, tmp_path / "g.ply")
    assert_bit_equal(read_splats(tmp_path / "g.ply"), a)
    write_splats(a, tmp_path / "g.splat")
    b = read_splats(tmp_path / "g.splat")
    write_splats(b, tmp_path / "g2.splat")
    assert_bit_equal(read_splats(tmp_path / "g2.splat"), b)
    assert (tmp_path / "g2.splat").read_bytes() == (tmp_path / "g.splat").read_bytes()


# ------------------------------------------------------------------------------ synthetic compressed
def _compressed_file(path: Path, chunk_rows: np.ndarray, packed: np.ndarray, sh: np.ndarray | None) -> Path:
    names = ["min_x", "min_y", "min_z", "max_x", "max_y", "max_z"]
    names += ["min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z"]
    if chunk_rows.shape[1] == 18:
        names += ["min_r", "min_g", "min_b", "max_r", "max_g", "max_b"]
    lines = ["ply", "format binary_little_endian 1.0", f"element chunk {chunk_rows.shape[0]}"]
    lines += [f"property float {n}" for n in names]
    lines += [f"element vertex {packed.shape[0]}"]
    lines += [f"property uint packed_{n}" for n in ("position", "rotation", "scale", "color")]
    if sh is not None:
        lines += [f"element sh {sh.shape[0]}"] + [f"property uchar f_rest_{i}" for i in range(sh.shape[1])]
    body = chunk_rows.astype("<f4").tobytes() + packed.astype("<u4").tobytes()
    body += b"" if sh is None else sh.astype(np.uint8).tobytes()
    path.write_bytes(("\n".join(lines) + "\nend_header\n").encode() + body)
    return path


def test_compressed_bit_layout_without_chunk_colour_and_with_sh(tmp_path: Path) -> None:
    chunk = np.array(
        [[-1, -2, -3, 1, 2, 3, -5, -6, -7, -1, -2, -3]], np.float32
    )  # 12 floats: no colour range
    pos = (2047 << 21) | (0 << 11) | 1023  # x max, y min, z ~ middle
    rot = (2 << 30) | (512 << 20) | (512 << 10) | 512  # largest is z (slot 2), the others ~0
    scl = (0 << 21) | (1023 << 11) | 2047
    col = (255 << 24) | (0 << 16) | (51 << 8) | 255
    sh = np.zeros((1, 9), np.uint8)
    sh[0, :3] = [0, 255, 127]
    a = read_splats(
        _compressed_file(tmp_path / "c.compressed.ply", chunk, np.array([[pos, rot, scl, col]]), sh)
    )
    np.testing.assert_allclose(a.means[0], [1, -2, -3 + 6 * 1023 / 2047], rtol=1e-6)
    np.testing.assert_allclose(a.log_scales[0], [-5, -2, -3], rtol=1e-6)
    assert np.argmax(np.abs(a.quats[0])) == 2 and abs(a.quats[0, 2] - 1) < 1e-5
    np.testing.assert_allclose(a.sh[0, 0] * SH_C0 + 0.5, [1, 0, 0.2], atol=1e-6)
    assert a.opacity_logits[0] > 10 and np.isfinite(a.opacity_logits[0])  # alpha 255 stays finite
    assert a.sh_degree == 1
    np.testing.assert_allclose(a.sh[0, 1:, 0], [-4, 4, (127.5 / 256 - 0.5) * 8], rtol=1e-6)  # R channel
    np.testing.assert_array_equal(a.sh[0, 1:, 1:], -4)  # G, B bytes are 0 -> -4


def test_compressed_wrong_chunk_count(tmp_path: Path) -> None:
    chunk = np.zeros((2, 18), np.float32)
    p = _compressed_file(tmp_path / "c.compressed.ply", chunk, np.zeros((10, 4), np.uint32), None)
    with pytest.raises(SplatFileError, match=r"2 chunks for 10 vertices"):
        read_splats(p)


def test_compressed_write_then_detected(tmp_path: Path) -> None:
    write_splats(random_arrays(n=300), tmp_path / "x.compressed.ply")
    assert detect_format(tmp_path / "x.compressed.ply") == "compressed_ply"
    assert read_splats(tmp_path / "x.compressed.ply").num_gaussians == 300


# ------------------------------------------------------------------------------------------ INRIA .ply
@pytest.mark.parametrize("deg", [0, 1, 2, 3])
@pytest.mark.parametrize("normals", [False, True])
def test_ply_round_trip_bit_exact(tmp_path: Path, deg: int, normals: bool) -> None:
    a = random_arrays(n=37, deg=deg, seed=deg, normals=normals)
    a.extra["filter_3D"] = np.linspace(0, 1, 37, dtype=np.float32)  # Mip-Splatting
    write_splats(a, tmp_path / "a.ply")
    b = read_splats(tmp_path / "a.ply")
    assert_bit_equal(a, b)
    assert list(b.extra) == (["nx", "ny", "nz"] if normals else []) + ["filter_3D"]
    for name in b.extra:
        assert b.extra[name].tobytes() == a.extra[name].tobytes()
    header = (tmp_path / "a.ply").read_bytes().split(b"end_header")[0].decode()
    names = [ln.split()[-1] for ln in header.splitlines() if ln.startswith("property")]
    assert names == inria_property_names(deg, normals) + ["filter_3D"]


def test_ply_any_property_order_and_channel_major_f_rest(tmp_path: Path) -> None:
    n, deg = 4, 2
    names = inria_property_names(deg, normals=False) + ["confidence"]
    rng = np.random.default_rng(1)
    order = rng.permutation(len(names))
    shuffled = [names[i] for i in order]
    data = np.zeros((n, len(names)), np.float32)
    for col, name in enumerate(shuffled):
        data[:, col] = np.arange(n) * 1000 + names.index(name)  # value encodes (vertex, standard index)
    a = read_splats(write_raw_ply(tmp_path / "s.ply", shuffled, data))
    k = (deg + 1) ** 2
    for c in range(3):
        np.testing.assert_array_equal(a.sh[:, 0, c], np.arange(n) * 1000 + 3 + c)
        for j in range(k - 1):
            np.testing.assert_array_equal(a.sh[:, 1 + j, c], np.arange(n) * 1000 + 6 + c * (k - 1) + j)
    np.testing.assert_array_equal(a.quats[:, 3], np.arange(n) * 1000 + names.index("rot_3"))
    np.testing.assert_array_equal(a.extra["confidence"], np.arange(n) * 1000 + names.index("confidence"))
    # written back in INRIA order, then the extras
    write_splats(a, tmp_path / "o.ply")
    head = (tmp_path / "o.ply").read_bytes().split(b"end_header")[0].decode()
    assert [ln.split()[-1] for ln in head.splitlines() if ln.startswith("property")] == names


def test_ply_gsplat_layout_and_non_float_extras(tmp_path: Path) -> None:
    """gsplat's export_splats writes no normals; other exporters add e.g. uchar colours: keep their type."""
    n = 6
    names = inria_property_names(1, normals=False)
    rng = np.random.default_rng(2)
    data = rng.normal(size=(n, len(names))).astype(np.float32)
    head = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    head += [f"property float {x}" for x in names] + ["property uchar red", "property double conf"]
    rec = np.empty(n, np.dtype([("f", "<f4", (len(names),)), ("red", "u1"), ("conf", "<f8")]))
    rec["f"], rec["red"], rec["conf"] = data, np.arange(n), np.linspace(0, 1, n)
    p = tmp_path / "g.ply"
    p.write_bytes(("\n".join(head) + "\nend_header\n").encode() + rec.tobytes())
    a = read_splats(p)
    assert a.sh_degree == 1 and a.extra["red"].dtype == np.uint8 and a.extra["conf"].dtype == np.float64
    np.testing.assert_array_equal(a.means, data[:, :3])
    write_splats(a, tmp_path / "g2.ply")
    assert (tmp_path / "g2.ply").read_bytes() == p.read_bytes()


# ------------------------------------------------------------------------------------------ .splat
def test_splat_known_record(tmp_path: Path) -> None:
    a = SplatArrays(
        means=np.array([[1.0, -2.0, 3.5]], np.float32),
        quats=np.array([[2.0, 0.0, 0.0, 0.0]], np.float32),  # normalised to (1,0,0,0) on write
        log_scales=np.log(np.array([[0.5, 1.0, 2.0]], np.float32)),
        opacity_logits=np.array([0.0], np.float32),  # sigmoid 0.5
        sh=((np.array([[[1.0, 0.0, 0.5]]]) - 0.5) / SH_C0).astype(np.float32),
    )
    write_splats(a, tmp_path / "k.splat")
    raw = (tmp_path / "k.splat").read_bytes()
    assert len(raw) == 32
    assert struct.unpack("<6f", raw[:24]) == pytest.approx((1, -2, 3.5, 0.5, 1, 2))
    assert tuple(raw[24:28]) == (255, 0, 128, 128)  # rint(0.5*255) = 128 (half to even: 127.5 -> 128)
    assert tuple(raw[28:32]) == (255, 128, 128, 128)


def test_splat_round_trip_is_exact_after_one_read(tmp_path: Path) -> None:
    a = random_arrays(n=3000, deg=2, seed=3)
    a.opacity_logits[:2] = [-40.0, 40.0]  # alpha bytes 0 and 255
    write_splats(a, tmp_path / "a.splat")
    assert (tmp_path / "a.splat").stat().st_size == 32 * 3000
    b = read_splats(tmp_path / "a.splat")
    assert b.sh_degree == 0 and np.isfinite(b.opacity_logits).all()
    # within .splat's precision of the original
    np.testing.assert_array_equal(b.means, a.means)
    np.testing.assert_allclose(b.log_scales, a.log_scales, atol=1e-6)
    rgb = np.clip(a.sh[:, 0] * SH_C0 + 0.5, 0, 1)
    assert np.abs(np.clip(b.sh[:, 0] * SH_C0 + 0.5, 0, 1) - rgb).max() <= 0.5 / 255 + 1e-6
    qa = a.quats / np.linalg.norm(a.quats, axis=1, keepdims=True)
    qb = b.quats / np.linalg.norm(b.quats, axis=1, keepdims=True)
    assert np.abs(np.abs((qa * qb).sum(1)) - 1).max() < 1e-3
    # read(write(read(x))) == read(x), bit for bit, and the bytes are stable
    write_splats(b, tmp_path / "b.splat")
    assert_bit_equal(read_splats(tmp_path / "b.splat"), b)
    assert (tmp_path / "b.splat").read_bytes() == (tmp_path / "a.splat").read_bytes()


def test_splat_bad_size_and_empty(tmp_path: Path) -> None:
    (tmp_path / "bad.splat").write_bytes(b"\0" * 33)
    with pytest.raises(SplatFileError, match="not a multiple of 32"):
        read_splats(tmp_path / "bad.splat")
    (tmp_path / "empty.splat").write_bytes(b"")
    with pytest.raises(SplatFileError, match="empty"):
        read_splats(tmp_path / "empty.splat")


# ------------------------------------------------------------------------------------------ bad files
def _good(tmp_path: Path, n: int = 5) -> tuple[list[str], np.ndarray]:
    names = inria_property_names(0, normals=False)
    data = np.random.default_rng(0).normal(size=(n, len(names))).astype(np.float32)
    return names, data


def test_truncated_body(tmp_path: Path) -> None:
    names, data = _good(tmp_path)
    p = write_raw_ply(tmp_path / "t.ply", names, data)
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(SplatFileError, match=r"t\.ply: truncated file.*room for 4 of the 5 vertex rows"):
        read_splats(p)


def test_vertex_count_too_large_or_too_small(tmp_path: Path) -> None:
    names, data = _good(tmp_path)
    with pytest.raises(SplatFileError, match="truncated"):
        read_splats(write_raw_ply(tmp_path / "big.ply", names, data, count=6))
    with pytest.raises(SplatFileError, match="56 bytes longer"):  # one 14-float vertex too many
        read_splats(write_raw_ply(tmp_path / "small.ply", names, data, count=4))
    with pytest.raises(SplatFileError, match="trailing data"):
        read_splats(write_raw_ply(tmp_path / "tail.ply", names, data, tail=b"xx"))


def test_missing_properties_are_named(tmp_path: Path) -> None:
    names, data = _good(tmp_path)
    keep = [i for i, n in enumerate(names) if n not in ("rot_3", "opacity")]
    with pytest.raises(SplatFileError, match=r"missing vertex properties: opacity, rot_3"):
        read_splats(write_raw_ply(tmp_path / "m.ply", [names[i] for i in keep], data[:, keep]))


def test_bad_f_rest_count(tmp_path: Path) -> None:
    names, data = _good(tmp_path)
    names2 = names + [f"f_rest_{i}" for i in range(6)]
    data2 = np.concatenate([data, np.zeros((5, 6), np.float32)], axis=1)
    with pytest.raises(SplatFileError, match="6 f_rest properties"):
        read_splats(write_raw_ply(tmp_path / "r.ply", names2, data2))


def test_ascii_and_big_endian_read_through_plyfile(tmp_path: Path) -> None:
    plyfile = pytest.importorskip("plyfile")
    a = random_arrays(n=20, deg=1, normals=True)
    write_splats(a, tmp_path / "le.ply")
    le = plyfile.PlyData.read(str(tmp_path / "le.ply"))  # the reference library writes the other encodings
    for name, kwargs in (("ascii.ply", {"text": True}), ("be.ply", {"byte_order": ">"})):
        plyfile.PlyData(le.elements, **kwargs).write(str(tmp_path / name))
        assert detect_format(tmp_path / name) == "ply"
        assert_bit_equal(read_splats(tmp_path / name), a)  # float32 text round-trips exactly
    with pytest.raises(SplatFileError, match=r"cut\.ply: cannot read the ascii PLY body"):
        text = (tmp_path / "ascii.ply").read_bytes()
        (tmp_path / "cut.ply").write_bytes(text[: len(text) - 200])
        read_splats(tmp_path / "cut.ply")
    names, data = _good(tmp_path)
    with pytest.raises(SplatFileError, match="truncated"):  # big-endian bodies are size-checked too
        read_splats(write_raw_ply(tmp_path / "b.ply", names, data, fmt="binary_big_endian", count=6))


def test_zero_vertices(tmp_path: Path) -> None:
    names, data = _good(tmp_path)
    with pytest.raises(SplatFileError, match="0 vertices"):
        read_splats(write_raw_ply(tmp_path / "z.ply", names, data[:0]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_named_and_counted(tmp_path: Path, bad: float) -> None:
    names, data = _good(tmp_path)
    data[[1, 3], names.index("opacity")] = bad
    data[2, names.index("scale_1")] = bad
    with pytest.raises(
        SplatFileError, match=r"of 5 vertices: opacity has 2 NaN/Inf values, scale_1 has 1 NaN/Inf value$"
    ):
        read_splats(write_raw_ply(tmp_path / "n.ply", names, data))


def test_not_a_ply_unknown_extension_missing_file(tmp_path: Path) -> None:
    (tmp_path / "x.ply").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(SplatFileError, match=r"x\.ply: INRIA \.ply expected from the extension"):
        read_splats(tmp_path / "x.ply")
    (tmp_path / "x.obj").write_text("v 0 0 0\n")
    with pytest.raises(SplatFileError, match=r"unknown splat file type \.obj"):
        read_splats(tmp_path / "x.obj")
    with pytest.raises(SplatFileError, match=r"nope\.ply: file not found"):
        read_splats(tmp_path / "nope.ply")
    with pytest.raises(SplatFileError, match=r"cannot write a \.obj file"):
        write_splats(random_arrays(), tmp_path / "y.obj")
    (tmp_path / "h.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 3\n")
    with pytest.raises(SplatFileError, match="no 'end_header'"):
        read_splats(tmp_path / "h.ply")


def test_write_rejects_invalid_arrays_and_leaves_no_file(tmp_path: Path) -> None:
    a = random_arrays()
    a.means[0, 0] = np.nan
    with pytest.raises(SplatFileError, match="means has non-finite"):
        write_splats(a, tmp_path / "o.ply")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ engine layer
def test_load_save_scene_bit_exact(tmp_path: Path) -> None:
    scene = make_random_scene(n=40, sh_degree=3, dtype=torch.float32, seed=4)
    save_scene(scene, tmp_path / "s.ply")
    back = load_scene(tmp_path / "s.ply")
    assert back.geometry_equal(scene) and torch.equal(back.sh, scene.sh)
    arrays = scene_to_arrays(back, extra={"nx": np.zeros(40, np.float32)})
    assert isinstance(scene_from_arrays(arrays), GaussianScene)


def test_load_scene_with_extra_and_stylised_save(shared_data: Path, tmp_path: Path) -> None:
    scene, extra = load_scene_with_extra(shared_data / "scenes" / "inria_sh3_scene.ply")
    assert scene.means.dtype == torch.float32
    styled = scene.replace(sh=scene.sh * 0.5)
    save_scene(styled, tmp_path / "styled.ply", extra=extra)
    back, extra2 = load_scene_with_extra(tmp_path / "styled.ply")
    assert back.geometry_equal(scene) and list(extra2) == ["nx", "ny", "nz"]


def test_engine_errors_are_scene_format_errors(tmp_path: Path) -> None:
    names, data = _good(tmp_path)
    p = write_raw_ply(tmp_path / "t.ply", names, data, count=9)
    with pytest.raises(SceneFormatError, match=r"t\.ply: truncated"):
        load_scene(p)
    data[0, names.index("rot_0") : names.index("rot_0") + 4] = 0  # valid file, invalid scene
    p = write_raw_ply(tmp_path / "q.ply", names, data)
    with pytest.raises(SceneFormatError, match=r"q\.ply: not a valid scene: .*all-zero quaternions"):
        load_scene(p)
    with pytest.raises(SceneFormatError, match=r"o\.obj: cannot write a \.obj file"):
        save_scene(make_random_scene(n=4, dtype=torch.float32), tmp_path / "o.obj")


def test_fuse_filter_3d_matches_mip_splatting_formula(tmp_path: Path) -> None:
    a = random_arrays(n=8, seed=5)
    scale = np.exp(a.log_scales.astype(np.float64))
    a.extra["filter_3D"] = scale[:, 0].astype(np.float32)  # filter as wide as the first axis
    a.extra["filter_3D"][0] = 0.0  # no filter: unchanged
    write_splats(a, tmp_path / "mip.ply")
    scene = load_scene(tmp_path / "mip.ply", fuse_filter_3d=True)
    f = a.extra["filter_3D"].astype(np.float64)
    want_scale = np.sqrt(scale**2 + f[:, None] ** 2)
    np.testing.assert_allclose(scene.scales.numpy(), want_scale, rtol=1e-5)
    coef = np.sqrt(np.prod(scale**2 / want_scale**2, axis=1))
    opacity = 1 / (1 + np.exp(-a.opacity_logits.astype(np.float64)))
    np.testing.assert_allclose(scene.opacities.numpy(), opacity * coef, rtol=1e-4)
    assert abs(coef[0] - 1) < 1e-12 and coef[1] < 1
    assert load_scene(tmp_path / "mip.ply").log_scales.numpy().tobytes() == a.log_scales.tobytes()  # raw


def test_header_with_comments_and_crlf_and_other_elements(tmp_path: Path) -> None:
    names, data = _good(tmp_path, n=3)
    head = ["ply", "format binary_little_endian 1.0", "comment made by a test", "obj_info x"]
    head += ["element camera 1", "property float fx", "element vertex 3"]
    head += [f"property float {n}" for n in names] + ["end_header"]
    camera = np.array([500.0], "<f4").tobytes()
    p = tmp_path / "c.ply"
    p.write_bytes("\r\n".join(head).encode() + b"\r\n" + camera + data.astype("<f4").tobytes())
    a = read_splats(p)
    np.testing.assert_array_equal(a.means, data[:, :3])
    np.testing.assert_array_equal(a.quats, data[:, names.index("rot_0") :])
