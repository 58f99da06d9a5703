"""Quantisation bounds of the lossy formats against their specs' steps, and bit-exact lossless round trips.

.spz (nianticlabs/spz README): positions 24-bit fixed point with `fractionalBits` (error <= half a step,
2^-(bits+1)); rotations smallest-three of 9-bit magnitudes over [0, sqrt(1/2)] (v3-4) or 8-bit x, y, z
(v2); colour round(f_dc * 0.15 * 255 + 127.5); alpha round(sigmoid * 255); log scale round((s + 10) * 16);
SH round(x * 128) + 128 then to buckets of 2^(8 - bits). SOG (playcanvas sog.md): 16-bit positions in the
log domain, 8-bit smallest-three rotations over [-sqrt(1/2), sqrt(1/2)], alpha 8 bits, scales / colours /
SH through 256-entry codebooks (nearest entry) and an SH palette. The same bounds are in docs/formats.md."""

from __future__ import annotations

import gzip
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from shared_protocol.splatfile import SPLAT_FORMATS, SplatArrays, read_splats, write_splats
from shared_protocol.splatfile.common import sigmoid, unit_quats

SH_C0 = 0.28209479177387814
FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")
EPS32 = 2.0**-24  # float32 relative rounding of a decoded value


def in_range_arrays(n: int = 4000, deg: int = 3, seed: int = 0, extent: float = 3.0) -> SplatArrays:
    """Random values inside every format's representable range (no clipping), quaternions unnormalised."""
    rng = np.random.default_rng(seed)
    k = (deg + 1) ** 2
    sh = rng.uniform(-0.9, 0.9, size=(n, k, 3))
    sh[:, 0] = rng.uniform(-3.0, 3.0, size=(n, 3))  # spz colour: |f_dc| <= 127.5 / 38.25 = 3.33
    return SplatArrays(
        means=rng.uniform(-extent, extent, size=(n, 3)).astype(np.float32),
        quats=(rng.normal(size=(n, 4)) * 1.3).astype(np.float32),
        log_scales=rng.uniform(-9.0, 5.0, size=(n, 3)).astype(np.float32),  # spz: [-10, 5.9375]
        opacity_logits=rng.uniform(-6.0, 6.0, size=n).astype(np.float32),
        sh=sh.astype(np.float32),
    )


def aligned_unit(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit wxyz quaternions of a and b, b's sign flipped to a's hemisphere (q and -q: the same rotation)."""
    ua, ub = unit_quats(a), unit_quats(b)
    ub *= np.where((ua * ub).sum(axis=1, keepdims=True) < 0, -1.0, 1.0)
    return ua, ub


def rotation_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ua, ub = aligned_unit(a, b)
    return 2.0 * np.arccos(np.clip(np.abs((ua * ub).sum(axis=1)), 0.0, 1.0))


def assert_smallest_three(orig: np.ndarray, back: np.ndarray, half_step: float, order: list[int]) -> None:
    """Every component but the largest (in `order`, the file's component order) within half a step."""
    ua, ub = aligned_unit(orig, back)
    ua, ub = ua[:, order], ub[:, order]
    largest = np.argmax(np.abs(ua), axis=1)
    ua *= np.where(ua[np.arange(len(ua)), largest] < 0, -1.0, 1.0)[:, None]
    ub *= np.where((ua * ub).sum(axis=1) < 0, -1.0, 1.0)[:, None]
    err = np.abs(ua - ub)
    err[np.arange(len(err)), largest] = 0.0
    assert err.max() <= half_step * (1 + 1e-6) + 1e-7, (err.max(), half_step)


def assert_opacity_within(orig: SplatArrays, back: SplatArrays, bound: float) -> None:
    err = np.abs(sigmoid(orig.opacity_logits) - sigmoid(back.opacity_logits))
    assert err.max() <= bound + 1e-6, err.max()


# ---------------------------------------------------------------------------------------------- .spz
def spz_header(path: Path) -> tuple[int, int]:
    """(version, fractionalBits) of a .spz file."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    _, version, _, _, bits = struct.unpack_from("<IIIBB", data)
    return version, bits


@pytest.mark.parametrize("version", [2, 3, 4])
def test_spz_errors_within_the_spec_steps(tmp_path: Path, version: int) -> None:
    if version == 4:
        pytest.importorskip("zstandard")
    a = in_range_arrays()
    path = tmp_path / "q.spz"
    write_splats(a, path, version=version)
    b = read_splats(path)
    assert b.num_gaussians == a.num_gaussians and b.sh_degree == 3
    assert spz_header(path) == (version, 12)

    half = 2.0 ** -(12 + 1)  # positions: half the fixed-point step 1/2^12
    pos_err = np.abs(a.means.astype(np.float64) - b.means)
    assert (pos_err <= half + EPS32 * np.abs(a.means)).all(), pos_err.max()
    assert pos_err.max() > half * 0.9  # the bound is tight: the quantisation is really 1/2^12

    if version >= 3:  # smallest three, 9-bit magnitude of |c| <= sqrt(1/2): step sqrt(1/2) / 511, xyzw order
        step = np.sqrt(0.5) / 511.0
        assert_smallest_three(a.quats, b.quats, step / 2, order=[1, 2, 3, 0])
        assert rotation_angle(a.quats, b.quats).max() <= 4 * np.sqrt(3) * step / 2
    else:  # v2: x, y, z of the w >= 0 quaternion in 8 bits over [-1, 1] (w derived)
        ua = unit_quats(a.quats)
        ua *= np.where(ua[:, :1] < 0, -1.0, 1.0)
        assert (b.quats[:, 0] >= 0).all()  # decoded as stored: w = sqrt(1 - |xyz|^2), not renormalised
        assert np.abs(ua[:, 1:] - b.quats[:, 1:]).max() <= 0.5 / 127.5 + 1e-6

    assert np.abs(a.log_scales - b.log_scales).max() <= 1 / 32 + 1e-6  # 8 bits, step 1/16
    assert_opacity_within(a, b, 1 / 510)  # 8 bits of sigmoid(opacity)
    dc_err = np.abs(a.sh[:, 0] - b.sh[:, 0])
    assert dc_err.max() <= 0.5 / (0.15 * 255) + 1e-6  # colour byte = f_dc * 0.15 * 255 + 127.5
    assert (SH_C0 * dc_err).max() <= 1 / 255  # the displayed colour 0.5 + SH_C0 * f_dc: within 1/255
    sh1 = np.abs(a.sh[:, 1:4] - b.sh[:, 1:4]).max()
    sh23 = np.abs(a.sh[:, 4:] - b.sh[:, 4:]).max()
    assert sh1 <= (8 / 2 + 0.5) / 128 + 1e-6  # 5 bits: buckets of 8, after the 8-bit rounding
    assert sh23 <= (16 / 2 + 0.5) / 128 + 1e-6  # 4 bits: buckets of 16


def test_spz_full_sh_precision_and_large_scene(tmp_path: Path) -> None:
    """8-bit SH keeps every 8-bit step; a scene too large for 12 fractional bits gets fewer bits."""
    a = in_range_arrays(n=2000, extent=5000.0)
    path = tmp_path / "big.spz"
    write_splats(a, path, sh1_bits=8, sh_rest_bits=8)
    b = read_splats(path)
    _, bits = spz_header(path)
    assert bits == 10  # 5000 * 2^10 < 2^23 <= 5000 * 2^11
    assert (np.abs(a.means.astype(np.float64) - b.means) <= 2.0 ** -(bits + 1) + EPS32 * 5000).all()
    assert np.abs(a.sh[:, 1:] - b.sh[:, 1:]).max() <= 0.5 / 128 + 1e-6


def test_spz_rewrite_is_a_fixed_point(tmp_path: Path) -> None:
    """read(write(read(f))) == read(f) bit for bit (decoded values sit on the quantisation grid)."""
    write_splats(in_range_arrays(n=500), tmp_path / "a.spz", version=3)
    once = read_splats(tmp_path / "a.spz")
    write_splats(once, tmp_path / "b.spz", version=3)
    twice = read_splats(tmp_path / "b.spz")
    for f in ("means", "log_scales", "opacity_logits", "sh"):
        assert getattr(once, f).tobytes() == getattr(twice, f).tobytes(), f
    assert rotation_angle(once.quats, twice.quats).max() <= 4 * np.sqrt(3) * np.sqrt(0.5) / 511 / 2


def test_spz_real_file_rewrite_within_bounds(shared_data: Path, tmp_path: Path) -> None:
    a = read_splats(shared_data / "scenes" / "fourth_st.spz")
    write_splats(a, tmp_path / "f.spz", version=2)
    b = read_splats(tmp_path / "f.spz")
    for f in ("means", "log_scales", "opacity_logits"):  # v2 -> v2: on the grid already, so exact
        assert getattr(a, f).tobytes() == getattr(b, f).tobytes(), f
    assert np.abs(a.sh - b.sh).max() <= 1e-6 and b.meta["antialiased"]


# ---------------------------------------------------------------------------------------------- SOG
def sog_meta(path: Path) -> dict:
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("meta.json"))


def nearest_entry_error(values: np.ndarray, book: np.ndarray) -> np.ndarray:
    return np.abs(values.astype(np.float64)[..., None] - book).min(axis=-1)


def test_sog_errors_within_the_spec_steps(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    a = in_range_arrays(n=3000, deg=1)
    path = tmp_path / "q.sog"
    write_splats(a, path)
    b = read_splats(path)
    meta = sog_meta(path)
    assert b.num_gaussians == a.num_gaussians and b.sh_degree == 1

    mins, maxs = np.array(meta["means"]["mins"]), np.array(meta["means"]["maxs"])
    t_half = (maxs - mins) / 65535 / 2  # half a 16-bit step in the symmetric-log domain, per axis
    t = lambda m: np.sign(m) * np.log1p(np.abs(m.astype(np.float64)))  # noqa: E731
    t_err = np.abs(t(a.means) - t(b.means))
    assert (t_err <= t_half * (1 + 1e-6) + 4 * EPS32).all(), (t_err.max(axis=0), t_half)
    m_bound = (1 + np.abs(a.means)) * np.expm1(t_half + 4 * EPS32) + EPS32 * np.abs(a.means)
    assert (np.abs(a.means - b.means) <= m_bound).all()

    step = np.sqrt(2.0) / 255  # c = (byte / 255 - 0.5) * sqrt(2), wxyz order
    assert_smallest_three(a.quats, b.quats, step / 2, order=[0, 1, 2, 3])
    assert rotation_angle(a.quats, b.quats).max() <= 4 * np.sqrt(3) * step / 2
    assert_opacity_within(a, b, 1 / 510)

    for key, orig, back in (("scales", a.log_scales, b.log_scales), ("sh0", a.sh[:, 0], b.sh[:, 0])):
        book = np.array(meta[key]["codebook"])
        assert len(book) == 256
        # the decoded value is the codebook entry nearest the original (the codebook is the quantum)
        np.testing.assert_allclose(np.abs(orig - back), nearest_entry_error(orig, book), atol=1e-6)
        assert np.isin(back.astype(np.float32), book.astype(np.float32)).all()
    assert meta["shN"]["count"] == 3000  # at most 65,536 rows: each Gaussian its own palette entry
    book = np.array(meta["shN"]["codebook"])
    np.testing.assert_allclose(
        np.abs(a.sh[:, 1:] - b.sh[:, 1:]), nearest_entry_error(a.sh[:, 1:], book), atol=1e-6
    )


def test_sog_exact_when_codebooks_hold_every_value(tmp_path: Path) -> None:
    """<= 256 distinct scales/colours/SH values and <= 65,536 SH rows: those come back exactly."""
    pytest.importorskip("PIL")
    rng = np.random.default_rng(1)
    a = in_range_arrays(n=1000, deg=2)
    levels = np.linspace(-0.9, 0.9, 200).astype(np.float32)
    a.sh = levels[rng.integers(0, 200, size=a.sh.shape)]
    a.log_scales = np.linspace(-8, 2, 256).astype(np.float32)[rng.integers(0, 256, size=a.log_scales.shape)]
    write_splats(a, tmp_path / "e.sog")
    b = read_splats(tmp_path / "e.sog")
    assert a.sh.tobytes() == b.sh.tobytes()
    assert a.log_scales.tobytes() == b.log_scales.tobytes()


def test_sog_unbundled_equals_bundled_and_rewrites_exactly(shared_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    a = read_splats(shared_data / "scenes" / "st_peter.sog")
    write_splats(a, tmp_path / "meta.json")
    b = read_splats(tmp_path)
    write_splats(a, tmp_path / "s.sog")
    c = read_splats(tmp_path / "s.sog")
    for f in ("log_scales", "opacity_logits", "sh"):  # SOG -> SOG: on the 8-bit grid and the codebooks
        x = getattr(a, f)
        assert x.tobytes() == getattr(b, f).tobytes() == getattr(c, f).tobytes(), f
    assert b.means.tobytes() == c.means.tobytes()
    # positions: mins/maxs are recomputed from the decoded values, so a new (nearly equal) 16-bit grid
    span = a.means.max(axis=0) - a.means.min(axis=0)
    assert (np.abs(a.means - b.means) <= span * 1e-4).all()
    angle = rotation_angle(a.quats, b.quats)  # exact unless the largest component changes on a near-tie
    assert np.mean(angle <= 1e-6) > 0.99 and angle.max() <= 4 * np.sqrt(3) * np.sqrt(2) / 255 / 2


# ---------------------------------------------------------------------------------------------- lossless
@pytest.mark.parametrize("name", ["x.ply", "x.glb", "x.gltf"])
@pytest.mark.parametrize("deg", [0, 3])
def test_lossless_formats_round_trip_bit_exact(tmp_path: Path, name: str, deg: int) -> None:
    a = in_range_arrays(n=700, deg=deg, seed=deg)
    write_splats(a, tmp_path / name)
    b = read_splats(tmp_path / name)
    for f in FIELDS:
        assert getattr(b, f).dtype == np.float32 and getattr(a, f).tobytes() == getattr(b, f).tobytes(), f
    assert all(fmt.lossless for fmt in SPLAT_FORMATS.values() if fmt.name in ("ply", "gltf"))


def test_glb_standard_attributes_only(tmp_path: Path) -> None:
    """exact=False (or a file from another tool): positions and SH exact, the rest within float32 rounding
    of exp / sigmoid / normalisation."""
    a = in_range_arrays(n=700, deg=1)
    write_splats(a, tmp_path / "s.glb", exact=False)
    b = read_splats(tmp_path / "s.glb")
    assert a.means.tobytes() == b.means.tobytes() and a.sh.tobytes() == b.sh.tobytes()
    assert (np.abs(a.log_scales - b.log_scales) <= 2.0**-23 * (1 + np.abs(a.log_scales))).all()
    logit_bound = 1e-6 * (1 + np.exp(np.abs(a.opacity_logits.astype(np.float64))))
    assert (np.abs(a.opacity_logits - b.opacity_logits) <= logit_bound).all()
    assert rotation_angle(a.quats, b.quats).max() <= 1e-6
    write_splats(a, tmp_path / "e.glb")  # exact=True adds 8 float32 a Gaussian (and their JSON)
    extra = (tmp_path / "e.glb").stat().st_size - (tmp_path / "s.glb").stat().st_size
    assert 32 * 700 <= extra <= 32 * 700 + 600


def test_glb_raw_attributes_ignored_when_another_tool_changed_the_standard_ones(tmp_path: Path) -> None:
    a = in_range_arrays(n=50, deg=0)
    write_splats(a, tmp_path / "s.glb")
    data = bytearray((tmp_path / "s.glb").read_bytes())
    size = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(bytes(data[20 : 20 + size]))
    view = doc["bufferViews"][doc["meshes"][0]["primitives"][0]["attributes"]["KHR_gaussian_splatting:SCALE"]]
    start = 20 + size + 8 + view["byteOffset"]
    struct.pack_into("<f", data, start, 0.5)  # another tool edits the first SCALE value
    (tmp_path / "s.glb").write_bytes(bytes(data))
    b = read_splats(tmp_path / "s.glb")
    assert b.log_scales[0, 0] == np.float32(np.log(0.5))  # the standard attribute wins
    assert rotation_angle(a.quats, b.quats).max() <= 1e-6


# ------------------------------------------------------------------------------------------ compressed ply
def test_compressed_ply_errors_within_the_chunk_steps(tmp_path: Path) -> None:
    """Per 256-splat chunk: positions 11/10/11 bits of the chunk box, log scales likewise, colour 8 bits of
    the chunk colour range, opacity 8 bits, rotation components 10 bits over [-sqrt(1/2), sqrt(1/2)]."""
    a = in_range_arrays(n=1000, deg=1)
    write_splats(a, tmp_path / "c.compressed.ply", morton=False)  # keep the order to compare one by one
    b = read_splats(tmp_path / "c.compressed.ply")
    chunk = np.arange(a.num_gaussians) // 256
    levels = np.array([2047.0, 1023.0, 2047.0])
    for orig, back in ((a.means, b.means), (a.log_scales, b.log_scales)):
        lo = np.minimum.reduceat(orig, np.arange(0, 1000, 256))[chunk].astype(np.float64)
        hi = np.maximum.reduceat(orig, np.arange(0, 1000, 256))[chunk].astype(np.float64)
        bound = (hi - lo) / levels / 2 * (1 + 1e-5) + EPS32 * (np.abs(lo) + np.abs(hi))
        assert (np.abs(orig - back) <= bound).all()
    rgb = a.sh[:, 0].astype(np.float64) * SH_C0 + 0.5
    span = np.maximum.reduceat(rgb, np.arange(0, 1000, 256)) - np.minimum.reduceat(
        rgb, np.arange(0, 1000, 256)
    )
    colour_err = np.abs(rgb - (b.sh[:, 0].astype(np.float64) * SH_C0 + 0.5))
    assert (colour_err <= span[chunk] / 510 * (1 + 1e-5) + 1e-6).all()
    assert_opacity_within(a, b, 1 / 510)
    assert_smallest_three(a.quats, b.quats, np.sqrt(2) / 1023 / 2, order=[0, 1, 2, 3])
    assert np.abs(a.sh[:, 1:] - b.sh[:, 1:]).max() <= 8 / 512 + 1e-6
