"""`splatbrush render`, run in-process on a small saved scene."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.cameras import Camera
from engine.cameras.io import load_cameras, save_cameras
from engine.cli import main
from engine.cli.render import parse_background
from engine.imaging import load_image
from tests.conftest import make_random_scene

scene_io = pytest.importorskip(
    "engine.scene.io", reason="engine.scene.io (load_scene/save_scene) not there yet"
)


@pytest.fixture
def scene_file(tmp_path):
    scene = make_random_scene(40, sh_degree=1, seed=2, dtype=torch.float32)
    path = tmp_path / "tiny.ply"
    scene_io.save_scene(scene, path)
    return path


def test_render_orbit_views(tmp_path, scene_file, capsys):
    out = tmp_path / "out"
    code = main(
        ["render", str(scene_file), "--views", "3", "--size", "24", "-o", str(out), "--background", "white"]
    )
    assert code == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["cameras.json", "contact_sheet.png", "view_000.png", "view_001.png", "view_002.png"]
    images = [load_image(out / f"view_{i:03d}.png") for i in range(3)]
    assert all(im.shape == (24, 24, 3) for im in images)
    for im in images:
        assert (im[0, 0] == 255).all()  # white background in the corner ...
        assert (im[8:16, 8:16] < 250).any()  # ... and the scene in the middle
    assert not np.array_equal(images[0], images[1])  # different views
    cams = load_cameras(out / "cameras.json")
    assert [c.name for c in cams] == ["orbit_000", "orbit_001", "orbit_002"]
    sheet = load_image(out / "contact_sheet.png")
    assert sheet.shape[1] > 3 * 24 and sheet.shape[0] > 24
    assert "rendered 3 views" in capsys.readouterr().out


def test_render_given_cameras_keep_or_fit_size(tmp_path, scene_file):
    a = Camera.look_at([0, -1, -4.0], [0, 0, 0], [0, -1, 0], 50, 20, 12, name="a")
    b = Camera.look_at([4.0, -1, 0], [0, 0, 0], [0, -1, 0], 50, 10, 16, name="b")
    cams_path = save_cameras(tmp_path / "cameras.json", [a, b])
    out = tmp_path / "own"
    assert main(["render", str(scene_file), "--cameras", str(cams_path), "-o", str(out)]) == 0
    assert load_image(out / "view_000.png").shape == (12, 20, 3) and load_image(
        out / "view_001.png"
    ).shape == (16, 10, 3)
    out = tmp_path / "fit"
    assert main(["render", str(scene_file), "--cameras", str(cams_path), "--size", "30", "-o", str(out)]) == 0
    assert load_image(out / "view_000.png").shape == (18, 30, 3) and load_image(
        out / "view_001.png"
    ).shape == (30, 19, 3)


def test_render_errors(tmp_path, scene_file, capsys):
    assert main(["render", str(scene_file), "--background", "1,2", "-o", str(tmp_path / "x")]) == 2
    assert "--background" in capsys.readouterr().err
    assert main(["render", str(tmp_path / "missing.ply"), "-o", str(tmp_path / "y")]) == 2
    assert "missing.ply" in capsys.readouterr().err
    assert (
        main(["render", str(scene_file), "--cameras", str(tmp_path / "nope.json"), "-o", str(tmp_path / "z")])
        == 2
    )
    assert "nope.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["render", str(scene_file), "--views", "2", "--cameras", "c.json", "-o", str(tmp_path)])


def test_parse_background():
    assert parse_background("white") == (1.0, 1.0, 1.0)
    assert parse_background("0.5,0,1") == (0.5, 0.0, 1.0)
    assert parse_background("255,0,51") == pytest.approx((1.0, 0.0, 0.2))
    for bad in ("1,1", "a,b,c", "-1,0,0", "300,0,0"):
        with pytest.raises(ValueError, match="background"):
            parse_background(bad)
