"""`splatbrush info` and `splatbrush convert`, run through the real `engine.cli.main`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import engine.cli
from shared_protocol.splatfile import SplatArrays, read_splats, write_splats


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch):
    """`main(argv) -> exit code` with only this file's subcommands registered (others may still be in
    progress), so these tests exercise the real parser, dispatch and error handling."""
    monkeypatch.setattr(engine.cli, "COMMANDS", ("info", "convert"))
    return engine.cli.main


def small_arrays(n: int = 300, deg: int = 1, seed: int = 0) -> SplatArrays:
    rng = np.random.default_rng(seed)
    return SplatArrays(
        means=rng.uniform(-2, 3, (n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        log_scales=rng.normal(-4, 0.5, (n, 3)).astype(np.float32),
        opacity_logits=rng.normal(0, 2, n).astype(np.float32),
        sh=rng.normal(0, 0.5, (n, (deg + 1) ** 2, 3)).astype(np.float32),
        extra={"nx": np.zeros(n, np.float32), "ny": np.zeros(n, np.float32), "nz": np.ones(n, np.float32)},
    )


def test_info_json_matches_the_data(cli, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = small_arrays()
    write_splats(a, tmp_path / "s.ply")
    assert cli(["info", str(tmp_path / "s.ply"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["num_gaussians"] == 300 and d["sh_degree"] == 1 and d["format"] == "ply"
    assert d["extra_properties"] == ["nx", "ny", "nz"]
    np.testing.assert_allclose(d["bbox"]["min"], a.means.min(0), rtol=1e-6)
    np.testing.assert_allclose(d["bbox"]["max"], a.means.max(0), rtol=1e-6)
    np.testing.assert_allclose(d["bbox"]["p1"], np.percentile(a.means, 1, axis=0), rtol=1e-5)
    opacity = 1 / (1 + np.exp(-a.opacity_logits.astype(np.float64)))
    assert d["opacity"]["median"] == pytest.approx(np.median(opacity))
    assert d["opacity"]["below_1_255"] == int((opacity < 1 / 255).sum())
    assert d["scale"]["max"] == pytest.approx(np.exp(a.log_scales.astype(np.float64)).max())


def test_info_text_on_real_files(cli, shared_data: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli(["info", str(shared_data / "scenes" / "guitar.compressed.ply")]) == 0
    out = capsys.readouterr().out
    assert "PlayCanvas compressed .ply" in out and "90,854" in out and "bbox p99" in out
    assert cli(["info", str(shared_data / "scenes" / "inria_sh3_scene.ply")]) == 0
    out = capsys.readouterr().out
    assert "9,080" in out and "sh degree    3" in out and "nx, ny, nz" in out


def test_info_bad_file_is_a_clean_error(cli, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nend_header\n0\n")
    assert cli(["info", str(tmp_path / "bad.ply")]) == 2
    err = capsys.readouterr().err
    assert "bad.ply: missing vertex properties" in err and "Traceback" not in err  # ASCII: read via plyfile
    assert cli(["info", str(tmp_path / "missing.splat")]) == 2
    assert "missing.splat: file not found" in capsys.readouterr().err


def test_convert_ply_splat_ply(cli, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = small_arrays(deg=2)
    write_splats(a, tmp_path / "a.ply")
    assert cli(["convert", str(tmp_path / "a.ply"), str(tmp_path / "a.splat")]) == 0
    captured = capsys.readouterr()
    assert "SH bands 1..2 dropped" in captured.err and "dropped nx, ny, nz" in captured.err
    assert "wrote" in captured.out and (tmp_path / "a.splat").stat().st_size == 300 * 32
    assert cli(["convert", str(tmp_path / "a.splat"), str(tmp_path / "b.ply")]) == 0
    b = read_splats(tmp_path / "b.ply")
    s = read_splats(tmp_path / "a.splat")
    for f in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert getattr(b, f).tobytes() == getattr(s, f).tobytes()
    np.testing.assert_array_equal(b.means, a.means)


def test_convert_keeps_ply_bytes_and_sh_degree_option(cli, tmp_path: Path) -> None:
    a = small_arrays(deg=3)
    write_splats(a, tmp_path / "a.ply")
    assert cli(["convert", str(tmp_path / "a.ply"), str(tmp_path / "same.ply")]) == 0
    assert (tmp_path / "same.ply").read_bytes() == (tmp_path / "a.ply").read_bytes()
    assert cli(["convert", str(tmp_path / "a.ply"), str(tmp_path / "d1.ply"), "--sh-degree", "1"]) == 0
    d1 = read_splats(tmp_path / "d1.ply")
    assert d1.sh_degree == 1 and d1.sh.tobytes() == np.ascontiguousarray(a.sh[:, :4]).tobytes()
    assert (
        cli(
            [
                "convert",
                str(tmp_path / "d1.ply"),
                str(tmp_path / "d2.ply"),
                "--sh-degree",
                "2",
                "--drop-extra",
            ]
        )
        == 0
    )
    d2 = read_splats(tmp_path / "d2.ply")
    assert d2.sh_degree == 2 and not d2.extra and (d2.sh[:, 4:] == 0).all()


def test_convert_refusals(cli, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_splats(small_arrays(), tmp_path / "a.ply")
    assert cli(["convert", str(tmp_path / "a.ply"), str(tmp_path / "a.spz"), "--spz-version", "5"]) == 2
    assert "cannot write .spz version 5" in capsys.readouterr().err
    assert cli(["convert", str(tmp_path / "a.ply"), str(tmp_path / "a.obj")]) == 2
    assert "cannot write a .obj file" in capsys.readouterr().err
    write_splats(small_arrays(seed=1), tmp_path / "b.ply")
    before = (tmp_path / "b.ply").read_bytes()
    assert cli(["convert", str(tmp_path / "a.ply"), str(tmp_path / "b.ply")]) == 1
    assert "--force" in capsys.readouterr().err and (tmp_path / "b.ply").read_bytes() == before
    assert cli(["convert", str(tmp_path / "a.ply"), str(tmp_path / "b.ply"), "--force"]) == 0
    assert (tmp_path / "b.ply").read_bytes() == (tmp_path / "a.ply").read_bytes()


def test_convert_real_compressed_to_ply(cli, shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "scenes" / "guitar.compressed.ply"
    assert cli(["convert", str(src), str(tmp_path / "guitar.ply")]) == 0
    a, b = read_splats(src), read_splats(tmp_path / "guitar.ply")
    assert (
        b.num_gaussians == 90_854
        and a.sh.tobytes() == b.sh.tobytes()
        and a.quats.tobytes() == b.quats.tobytes()
    )


def test_convert_fuse_filter_3d(cli, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = small_arrays(deg=0)
    write_splats(a, tmp_path / "plain.ply")
    assert cli(["convert", str(tmp_path / "plain.ply"), str(tmp_path / "x.ply"), "--fuse-filter-3d"]) == 1
    assert "no filter_3D" in capsys.readouterr().err
    a.extra["filter_3D"] = np.full(300, 0.01, np.float32)
    write_splats(a, tmp_path / "mip.ply")
    assert cli(["info", str(tmp_path / "mip.ply")]) == 0
    assert "filter_3D is not fused" in capsys.readouterr().out
    assert cli(["convert", str(tmp_path / "mip.ply"), str(tmp_path / "fused.ply"), "--fuse-filter-3d"]) == 0
    b = read_splats(tmp_path / "fused.ply")
    assert "filter_3D" not in b.extra and (b.log_scales > a.log_scales).all()
    assert (b.opacity_logits < a.opacity_logits).all() and b.means.tobytes() == a.means.tobytes()


@pytest.mark.parametrize(
    ("name", "fmt", "count", "degree"),
    [
        ("fourth_st.spz", "Niantic .spz", "131,199", 3),
        ("st_peter.sog", "PlayCanvas SOG", "133,618", 0),
        ("playbot_sog", "PlayCanvas SOG", "500,000", 2),
    ],
)
def test_info_on_real_web_formats(
    cli, shared_data: Path, capsys, name: str, fmt: str, count: str, degree: int
):
    pytest.importorskip("PIL")
    assert cli(["info", str(shared_data / "scenes" / name)]) == 0
    out = capsys.readouterr().out
    assert fmt in out and count in out and f"sh degree    {degree}" in out


@pytest.mark.parametrize(
    "out_name", ["o.spz", "o.sog", "o.glb", "o.gltf", "o.compressed.ply", "sog/meta.json"]
)
def test_convert_to_every_writable_format_and_back(cli, tmp_path: Path, capsys, out_name: str) -> None:
    pytest.importorskip("PIL")
    a = small_arrays(deg=1)
    write_splats(a, tmp_path / "a.ply")
    out = tmp_path / out_name
    out.parent.mkdir(exist_ok=True)
    assert cli(["convert", str(tmp_path / "a.ply"), str(out)]) == 0
    err = capsys.readouterr().err
    assert cli(["convert", str(out.parent if out.name == "meta.json" else out), str(tmp_path / "b.ply")]) == 0
    b = read_splats(tmp_path / "b.ply")
    assert b.num_gaussians == 300 and b.sh_degree == 1
    if out_name.endswith((".glb", ".gltf")):  # lossless: the same values (extras are dropped)
        assert b.means.tobytes() == a.means.tobytes() and b.sh.tobytes() == a.sh.tobytes()
        assert b.log_scales.tobytes() == a.log_scales.tobytes()
    else:  # lossy: the convert note says so
        assert "note:" in err
        assert np.abs(np.sort(b.means, axis=0) - np.sort(a.means, axis=0)).max() < 0.01


def test_convert_spz_version_4_and_bad_spz(cli, tmp_path: Path, capsys) -> None:
    pytest.importorskip("zstandard")
    write_splats(small_arrays(), tmp_path / "a.ply")
    assert cli(["convert", str(tmp_path / "a.ply"), str(tmp_path / "a.spz"), "--spz-version", "4"]) == 0
    assert (tmp_path / "a.spz").read_bytes()[:4] == b"NGSP"
    (tmp_path / "cut.spz").write_bytes((tmp_path / "a.spz").read_bytes()[:100])
    capsys.readouterr()
    assert cli(["info", str(tmp_path / "cut.spz")]) == 2
    err = capsys.readouterr().err
    assert "cut.spz:" in err and "Traceback" not in err
