"""engine.imaging: uint8 conversion, PNG writing/reading, robust loading (modes, EXIF, bad files), sheets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine.imaging import ImageError, contact_sheet, grid_rows, load_image, save_png, to_uint8


def test_to_uint8_floats_tensors_and_gray():
    x = torch.tensor([[[0.0, 0.5, 1.0], [-0.2, 1.7, 0.25]]])  # [1, 2, 3]
    out = to_uint8(x)
    assert out.dtype == np.uint8 and out.shape == (1, 2, 3)
    np.testing.assert_array_equal(out, [[[0, 128, 255], [0, 255, 64]]])  # clipped, rounded
    assert to_uint8(x.requires_grad_()).shape == (1, 2, 3)  # grad tensors are fine
    gray = to_uint8(np.array([[0.0, 1.0]]))
    np.testing.assert_array_equal(gray, [[[0, 0, 0], [255, 255, 255]]])
    u8 = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    np.testing.assert_array_equal(to_uint8(u8), u8)
    np.testing.assert_array_equal(to_uint8(u8.astype(np.int64)), u8)
    assert to_uint8(np.array([[np.nan, np.inf]])).tolist() == [[[0, 0, 0], [255, 255, 255]]]
    for bad in (np.zeros((2, 2, 4)), np.zeros((3,)), np.zeros((0, 2, 3)), np.full((1, 1, 3), 300)):
        with pytest.raises(ImageError):
            to_uint8(bad)


def test_png_round_trip_is_exact(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    path = save_png(tmp_path / "sub" / "dir" / "a.png", img)
    assert path.is_file()
    np.testing.assert_array_equal(load_image(path), img)
    f = torch.rand(5, 7, 3, dtype=torch.float64)
    np.testing.assert_array_equal(load_image(save_png(tmp_path / "f.png", f)), to_uint8(f))


def test_load_image_modes(tmp_path):
    Image.fromarray(np.array([[0, 100], [200, 255]], dtype=np.uint8), "L").save(tmp_path / "g.png")
    g = load_image(tmp_path / "g.png")
    assert g.shape == (2, 2, 3) and g[1, 0].tolist() == [200, 200, 200]
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = [255, 0, 0, 255]  # opaque red
    rgba[0, 1] = [255, 0, 0, 0]  # fully transparent: becomes white
    rgba[1, 0] = [0, 0, 0, 128]  # half transparent black: mid gray
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    a = load_image(tmp_path / "a.png")
    assert a[0, 0].tolist() == [255, 0, 0] and a[0, 1].tolist() == [255, 255, 255]
    assert abs(int(a[1, 0, 0]) - 127) <= 1
    Image.fromarray(np.full((3, 3), 65535, dtype=np.uint16)).save(tmp_path / "w16.png")
    assert load_image(tmp_path / "w16.png").min() == 255  # 16-bit white stays white
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).convert("P").save(tmp_path / "p.gif")
    assert load_image(tmp_path / "p.gif").shape == (4, 4, 3)


def test_load_image_applies_exif_orientation(tmp_path):
    img = np.zeros((16, 24, 3), dtype=np.uint8)
    img[:8, :8] = [255, 0, 0]  # red at the top-left of the stored (landscape) pixels
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    pil.save(tmp_path / "rot.jpg", exif=exif, quality=100, subsampling=0)
    out = load_image(tmp_path / "rot.jpg")
    assert out.shape == (24, 16, 3)  # displayed upright: portrait
    assert out[2, 13, 0] > 200 and out[2, 13, 1] < 60  # the red corner moved to the top-right
    assert out[2, 2, 0] < 60 and out[21, 2, 0] < 60


def test_load_image_errors(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="not a file"):
        load_image(tmp_path)
    (tmp_path / "text.png").write_text("hello, not an image")
    with pytest.raises(ImageError, match="text.png"):
        load_image(tmp_path / "text.png")
    good = tmp_path / "good.png"
    save_png(good, np.zeros((64, 64, 3), np.uint8) + 90)
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:60])  # truncated
    with pytest.raises(ImageError, match="cut.png"):
        load_image(tmp_path / "cut.png")


def test_load_real_style_image(shared_data):
    img = load_image(shared_data / "styles" / "vg_starry_night.jpg")
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) > 100
    assert img.std() > 10


def test_contact_sheet_layout():
    red = np.zeros((10, 20, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((6, 8, 3), np.uint8)
    blue[..., 2] = 255
    sheet = contact_sheet([[red, blue], [blue]], gap=2)
    # columns as wide as their widest image (20, 8), rows as tall as their tallest (10, 6), gaps of 2
    assert sheet.shape == (2 + 10 + 2 + 6 + 2, 2 + 20 + 2 + 8 + 2, 3)
    np.testing.assert_array_equal(sheet[2:12, 2:22], red)
    np.testing.assert_array_equal(sheet[4:10, 24:32], blue)  # centred in a 10-high cell
    np.testing.assert_array_equal(sheet[14:20, 8:16], blue)  # centred in a 20-wide cell
    assert (sheet[0:2] == 255).all() and (sheet[14:20, 24:32] == 255).all()  # gaps and the empty cell
    labelled = contact_sheet(
        [[red, blue], [blue, None]], row_labels=["original", "styled"], col_labels=["a", "b"]
    )
    assert labelled.shape[0] > sheet.shape[0] and labelled.shape[1] > sheet.shape[1]
    left = labelled[:, : labelled.shape[1] - sheet.shape[1]]
    assert (left < 128).any()  # the labels left some ink
    with pytest.raises(ImageError, match="row_labels"):
        contact_sheet([[red]], row_labels=["a", "b"])
    with pytest.raises(ImageError, match="at least one"):
        contact_sheet([])


def test_grid_rows():
    assert grid_rows(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ImageError):
        grid_rows([1], 0)


def _png_claiming(width: int, height: int) -> bytes:
    """A syntactically valid PNG header claiming width x height RGB pixels, with (almost) no pixel data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [50_000, 17_000])  # PIL's DecompressionBombError; our own pixel limit
def test_crafted_huge_png_is_one_clear_error(tmp_path, side):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_claiming(side, side))
    with pytest.raises(ImageError, match="bomb.png") as info:
        load_image(bomb)
    assert "\n" not in str(info.value) and info.value.__cause__ is None


def test_cli_reports_a_crafted_style_in_one_line(tmp_path, capsys):
    from engine.cli import main

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_claiming(50_000, 50_000))
    scene = tmp_path / "scene.splat"
    scene.write_bytes(b"")
    rc = main(
        ["submit", str(scene), "--style", str(bomb), "--address", "tcp://127.0.0.1:9", "--timeout", "0.2"]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "bomb.png" in err, err
