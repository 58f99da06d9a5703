"""Cameras: Blender conversion (against hand-computed projections), file formats, orbit views, ordering."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from engine.cameras import Camera, CameraError
from engine.cameras.blender import camera_from_blender, camera_to_blender
from engine.cameras.io import load_cameras, save_cameras
from engine.cameras.orbit import (
    adjacency_order,
    orbit_cameras,
    path_cost,
    resolve_up,
    robust_bounds,
)
from tests.conftest import REPO, make_random_scene


# ---------------------------------------------------------------------------------------------- Blender
def _blender_matrix(location, scale: float = 1.0) -> np.ndarray:
    """A Blender camera at `location` rotated 90 degrees about X: it looks along world +Y with +Z up."""
    m = np.eye(4)
    m[:3, :3] = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]) * scale  # Rx(90 deg), uniformly scaled
    m[:3, 3] = location
    return m


def _project(camera: Camera, point) -> tuple[float, float]:
    p = camera.world_to_camera @ np.append(np.asarray(point, dtype=np.float64), 1.0)
    assert p[2] > 0
    return camera.fx * p[0] / p[2] + camera.cx, camera.fy * p[1] / p[2] + camera.cy


# Each case: Blender settings and, worked out by hand from the physical sensor, the pixel size in mm (x, y),
# the visible sensor window's half extents in mm and the length in mm that one unit of shift moves it.
BLENDER_CASES = {
    # 36 mm spans 1920 px; the window is 36 x 20.25 mm; shift is in units of the width (36 mm)
    "horizontal": dict(
        settings=dict(
            sensor_fit="HORIZONTAL", resolution_x=1920, resolution_y=1080, shift_x=0.1, shift_y=-0.05
        ),
        pixel_mm=(36 / 1920, 36 / 1920),
        half_mm=(18.0, 10.125),
        shift_mm=36.0,
    ),
    # sensor_height 24 mm spans 1080 px; window 42.67 x 24 mm; shift in units of the height (24 mm)
    "vertical": dict(
        settings=dict(
            sensor_fit="VERTICAL", resolution_x=1920, resolution_y=1080, shift_x=-0.2, shift_y=0.15
        ),
        pixel_mm=(24 / 1080, 24 / 1080),
        half_mm=(1920 * 24 / 1080 / 2, 12.0),
        shift_mm=24.0,
    ),
    # portrait: AUTO fits sensor_width (36 mm) to the larger dimension, the height; shift unit = 36 mm
    "auto_portrait": dict(
        settings=dict(sensor_fit="AUTO", resolution_x=1080, resolution_y=1920, shift_x=0.05, shift_y=0.1),
        pixel_mm=(36 / 1920, 36 / 1920),
        half_mm=(1080 * 36 / 1920 / 2, 18.0),
        shift_mm=36.0,
    ),
    # 800x600 at 50 % = 400x300 px, pixels twice as tall as wide: 400 x 600 width units, so AUTO fits the
    # 36 mm to the height: one width unit = 36/600 mm, a pixel is 0.06 x 0.12 mm, the window 24 x 36 mm
    "auto_pixel_aspect_percentage": dict(
        settings=dict(
            sensor_fit="AUTO",
            resolution_x=800,
            resolution_y=600,
            resolution_percentage=50,
            shift_x=0.1,
            shift_y=0.2,
            pixel_aspect_x=1.0,
            pixel_aspect_y=2.0,
        ),  # fmt: skip
        pixel_mm=(36 / 600, 72 / 600),
        half_mm=(12.0, 18.0),
        shift_mm=36.0,
    ),
}


@pytest.mark.parametrize("case", sorted(BLENDER_CASES))
@pytest.mark.parametrize("object_scale", [1.0, 3.0])
def test_blender_conversion_matches_hand_projection(case, object_scale):
    spec = BLENDER_CASES[case]
    settings = dict(lens_mm=50.0, sensor_width=36.0, sensor_height=24.0, **spec["settings"])
    cam = camera_from_blender(_blender_matrix([1.0, -10.0, 2.0], object_scale), **settings, name=case)
    pct = settings.get("resolution_percentage", 100)
    assert (cam.width, cam.height) == (
        settings["resolution_x"] * pct // 100,
        settings["resolution_y"] * pct // 100,
    )
    pw, ph = spec["pixel_mm"]
    half_w, half_h = spec["half_mm"]
    assert cam.width * pw == pytest.approx(2 * half_w) and cam.height * ph == pytest.approx(2 * half_h)
    left = -half_w + settings["shift_x"] * spec["shift_mm"]  # sensor window edges in mm, after the shift
    top = half_h + settings["shift_y"] * spec["shift_mm"]
    for right_of, above, depth in [(0.0, 0.0, 5.0), (0.7, -0.3, 4.0), (-1.5, 0.9, 12.0), (0.2, 0.4, 2.5)]:
        # a point `depth` in front of the camera (+Y), `right_of` to its right (+X) and `above` it (+Z)
        world = np.array([1.0 + right_of, -10.0 + depth, 2.0 + above])
        x_mm, y_mm = 50.0 * right_of / depth, 50.0 * above / depth  # on the sensor, by similar triangles
        expected = ((x_mm - left) / pw, (top - y_mm) / ph)  # pixels from the image's top-left corner
        assert _project(cam, world) == pytest.approx(expected, abs=1e-6)


def test_blender_camera_axes_and_centre():
    cam = camera_from_blender(_blender_matrix([1.0, -10.0, 2.0], 2.0), 35.0, 36.0, 24.0, "AUTO", 640, 480)
    np.testing.assert_allclose(cam.position, [1.0, -10.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(cam.forward, [0, 1, 0], atol=1e-12)  # Blender -Z local = world +Y here
    np.testing.assert_allclose(cam.world_to_camera[1, :3], [0, 0, -1], atol=1e-12)  # image down = world -Z
    assert np.linalg.det(cam.world_to_camera[:3, :3]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "fx,fy,cx,cy,w,h",
    [(500.0, 500.0, 320.0, 240.0, 640, 480), (800.0, 400.0, 300.0, 200.0, 640, 480),
     (300.0, 450.0, 150.0, 420.0, 320, 800), (1000.0, 1000.0, 100.0, 50.0, 256, 256)],
)  # fmt: skip
def test_blender_round_trip(fx, fy, cx, cy, w, h):
    cam = Camera.look_at([2.0, -1.0, 3.0], [0.1, 0.2, -0.3], [0, 0, 1], 40.0, w, h)
    cam = Camera(cam.world_to_camera, fx, fy, cx, cy, w, h, "rt")
    b = camera_to_blender(cam)
    assert b["sensor_fit"] == "AUTO" and min(b["pixel_aspect_x"], b["pixel_aspect_y"]) == 1.0
    back = camera_from_blender(
        b["matrix_world"], b["lens"], b["sensor_width"], b["sensor_height"], b["sensor_fit"],
        b["resolution_x"], b["resolution_y"], b["resolution_percentage"], b["shift_x"], b["shift_y"],
        b["pixel_aspect_x"], b["pixel_aspect_y"],
    )  # fmt: skip
    np.testing.assert_allclose(back.world_to_camera, cam.world_to_camera, atol=1e-10)
    assert (back.fx, back.fy, back.cx, back.cy) == pytest.approx((fx, fy, cx, cy), rel=1e-10)
    assert (back.width, back.height) == (w, h)


def test_shared_protocol_cameras_is_numpy_only():
    source = (REPO / "shared_protocol" / "cameras.py").read_text()
    imports = [ln for ln in source.splitlines() if ln.startswith(("import ", "from "))]
    assert all(("torch" not in ln and "engine" not in ln and "bpy" not in ln) for ln in imports), imports


def test_blender_bad_values():
    with pytest.raises(CameraError, match="sensor_fit"):
        camera_from_blender(np.eye(4), 50, 36, 24, "DIAGONAL", 640, 480)
    with pytest.raises(CameraError, match="lens_mm"):
        camera_from_blender(np.eye(4), 0.0, 36, 24, "AUTO", 640, 480)
    with pytest.raises(CameraError, match="mirrored"):
        camera_from_blender(np.diag([1.0, 1.0, -1.0, 1.0]), 50, 36, 24, "AUTO", 640, 480)
    with pytest.raises(CameraError, match="4x4"):
        camera_from_blender(np.eye(3), 50, 36, 24, "AUTO", 640, 480)


# ---------------------------------------------------------------------------------------------- orbit
def _pixels(camera: Camera, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # [M, 2], depth [M]
    p = points @ camera.world_to_camera[:3, :3].T + camera.world_to_camera[:3, 3]
    return np.stack(
        [camera.fx * p[:, 0] / p[:, 2] + camera.cx, camera.fy * p[:, 1] / p[:, 2] + camera.cy], 1
    ), p[:, 2]


def _box_corners(lo, hi) -> np.ndarray:  # [8, 3]
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


@pytest.mark.parametrize("elevations", [(20.0,), (10.0, 45.0), (-15.0, 15.0, 50.0)])
def test_orbit_looks_at_box_centre_and_frames_it(elevations):
    scene = make_random_scene(300, seed=3)
    scene = scene.replace(means=scene.means * torch.tensor([2.0, 0.5, 1.0], dtype=scene.means.dtype) + 5.0)
    cams = orbit_cameras(scene, 14, 96, 64, elevation_deg=elevations, fov_deg=45.0)
    assert len(cams) == 14 and [c.name for c in cams] == [f"orbit_{i:03d}" for i in range(14)]
    lo, hi = robust_bounds(scene)
    centre = (lo + hi) / 2
    corners = _box_corners(lo, hi)
    radii = [np.linalg.norm(c.position - centre) for c in cams]
    np.testing.assert_allclose(radii, radii[0], rtol=1e-9)  # one shared distance
    tightest = 0.0
    for cam in cams:
        assert np.linalg.det(cam.world_to_camera[:3, :3]) == pytest.approx(1.0)
        uv, _ = _pixels(cam, centre[None])
        np.testing.assert_allclose(uv[0], [48.0, 32.0], atol=1e-6)  # the centre is in the middle
        uv, depth = _pixels(cam, corners)
        assert (depth > 0).all()
        assert (
            (uv[:, 0] >= 0).all()
            and (uv[:, 0] <= 96).all()
            and (uv[:, 1] >= 0).all()
            and (uv[:, 1] <= 64).all()
        )
        # the box fills the frame: in the tightest view it nearly touches an edge
        fill = max(np.abs(uv[:, 0] - 48).max() / 48, np.abs(uv[:, 1] - 32).max() / 32)
        tightest = max(tightest, fill)
    assert tightest == pytest.approx(1 / 1.05, rel=1e-6)  # default margin 1.05


def test_orbit_up_and_elevation():
    cams = orbit_cameras(make_random_scene(100), 8, 32, 32, elevation_deg=30.0, up="+z")
    for cam in cams:
        image_up = -cam.world_to_camera[1, :3]
        assert image_up @ np.array([0, 0, 1.0]) > 0.8  # world up is up in the image
        assert np.degrees(np.arcsin(-cam.forward[2])) == pytest.approx(30.0)  # looks down by 30 degrees
    default = orbit_cameras(make_random_scene(100), 4, 32, 32)
    assert all(-c.world_to_camera[1, :3] @ np.array([0, -1.0, 0]) > 0.8 for c in default)  # -y by default


def test_resolve_up_rules():
    np.testing.assert_allclose(resolve_up(), [0, -1, 0])
    np.testing.assert_allclose(resolve_up("+z"), [0, 0, 1])
    np.testing.assert_allclose(resolve_up("-x"), [-1, 0, 0])
    np.testing.assert_allclose(resolve_up([0, 0, 3]), [0, 0, 1])
    tilted = np.array([0.2, 0.1, 1.0])
    refs = [
        Camera.look_at([3 * np.cos(a), 3 * np.sin(a), 1], [0, 0, 0], tilted, 40, 32, 32) for a in range(5)
    ]
    est = resolve_up(None, refs)
    assert est @ (tilted / np.linalg.norm(tilted)) > 0.9  # estimated from the reference cameras
    np.testing.assert_allclose(resolve_up("y", refs), [0, 1, 0])  # explicit wins
    for bad in ("+w", [0, 0, 0], [1, 2]):
        with pytest.raises(CameraError, match="up"):
            resolve_up(bad)


def test_robust_bounds_ignore_far_outliers():
    g = torch.Generator().manual_seed(0)
    core = torch.rand(990, 3, generator=g, dtype=torch.float64) * 2 - 1  # in [-1, 1]^3
    outliers = torch.randn(10, 3, generator=g, dtype=torch.float64) * 1000  # 1 % of the points, far away
    scene = make_random_scene(1000).replace(means=torch.cat([core, outliers]))
    lo, hi = robust_bounds(scene)
    assert (lo > -1.01).all() and (hi < 1.01).all() and (hi - lo > 1.8).all()
    clean = orbit_cameras(core, 6, 32, 32)
    dirty = orbit_cameras(scene, 6, 32, 32)
    r_clean = np.linalg.norm(clean[0].position - (robust_bounds(core)[0] + robust_bounds(core)[1]) / 2)
    r_dirty = np.linalg.norm(dirty[0].position - (lo + hi) / 2)
    assert r_dirty == pytest.approx(r_clean, rel=0.1)  # the radius is not blown up by the outliers


def test_orbit_is_in_adjacency_order():
    scene = make_random_scene(100)
    cams = orbit_cameras(scene, 16, 32, 32, elevation_deg=(0.0, 40.0))
    lo, hi = robust_bounds(scene)
    pos = np.stack([c.position for c in cams]) - (lo + hi) / 2
    step = np.linalg.norm(np.diff(pos, axis=0), axis=1)
    # consecutive views are each other's nearest neighbours: no step is longer than the ring-to-ring hop
    nearest = np.sort(np.linalg.norm(pos[:, None] - pos[None], axis=-1), axis=1)[:, 1]
    assert step.max() <= 1.5 * nearest.max()
    # serpentine: the second ring starts above the end of the first one and runs backwards
    az = np.degrees(np.arctan2(pos[:, 2], pos[:, 0]))
    assert (
        np.diff(np.unwrap(np.radians(az[:8]))).max() > 0 and np.diff(np.unwrap(np.radians(az[8:]))).max() < 0
    )
    assert az[8] == pytest.approx(az[7], abs=1e-6)


def test_adjacency_order_recovers_a_shuffled_ring():
    ring = orbit_cameras(make_random_scene(100), 24, 32, 32, elevation_deg=10.0)
    perm = list(range(24))
    random.Random(5).shuffle(perm)
    shuffled = [ring[i] for i in perm]
    order = adjacency_order(shuffled)
    assert sorted(order) == list(range(24)) and order[0] == 0  # a permutation that keeps the start
    recovered = [perm[i] for i in order]
    steps = {(b - a) % 24 for a, b in zip(recovered[:-1], recovered[1:], strict=True)}
    assert steps in ({1}, {23})  # walks around the ring one way, neighbour after neighbour
    assert path_cost(shuffled, order) < 0.5 * path_cost(shuffled)


def test_adjacency_order_small_and_bad():
    assert adjacency_order([]) == []
    cams = orbit_cameras(make_random_scene(50), 3, 16, 16)
    assert sorted(adjacency_order(cams, start=2)) == [0, 1, 2] and adjacency_order(cams, start=2)[0] == 2
    with pytest.raises(CameraError, match="start"):
        adjacency_order(cams, start=7)


def test_orbit_bad_arguments():
    scene = make_random_scene(20)
    with pytest.raises(CameraError, match="n >= 1"):
        orbit_cameras(scene, 0, 32, 32)
    with pytest.raises(CameraError, match="elevations"):
        orbit_cameras(scene, 4, 32, 32, elevation_deg=90.0)
    with pytest.raises(CameraError, match="fov"):
        orbit_cameras(scene, 4, 32, 32, fov_deg=0.0)
    with pytest.raises(CameraError, match=r"\[N, 3\]"):
        orbit_cameras(np.zeros((0, 3)), 4, 32, 32)


# ---------------------------------------------------------------------------------------------- files
def _some_cameras() -> list[Camera]:
    cams = orbit_cameras(make_random_scene(50), 5, 64, 48, elevation_deg=(10.0, 35.0), up="+z")
    cams[2] = Camera(cams[2].world_to_camera, 70.0, 65.0, 30.0, 20.0, 64, 48, "off_centre")
    return cams


def _assert_same_cameras(a: list[Camera], b: list[Camera], names: bool = True):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(y.world_to_camera, x.world_to_camera, atol=1e-12)
        assert (y.fx, y.fy, y.cx, y.cy) == pytest.approx((x.fx, x.fy, x.cx, x.cy), rel=1e-12)
        assert (y.width, y.height) == (x.width, x.height)
        if names:
            assert y.name == x.name


@pytest.mark.parametrize("name,fmt", [("cameras.json", None), ("transforms.json", None),
                                      ("cams.json", "splatbrush"), ("cams.npz", None)])  # fmt: skip
def test_camera_file_round_trips(tmp_path, name, fmt):
    cams = _some_cameras()
    path = save_cameras(tmp_path / name, cams, format=fmt)
    assert path == tmp_path / name
    _assert_same_cameras(cams, load_cameras(path))


def test_inria_layout_and_meaning(tmp_path):
    cams = _some_cameras()
    path = save_cameras(tmp_path / "cameras.json", cams)
    entries = json.loads(path.read_text())
    e = entries[0]
    assert set(e) == {"id", "img_name", "width", "height", "position", "rotation", "fx", "fy"}
    np.testing.assert_allclose(e["position"], cams[0].position, atol=1e-12)  # camera centre
    np.testing.assert_allclose(np.array(e["rotation"])[:, 2], cams[0].forward, atol=1e-12)  # column 2 = +z
    assert {"cx", "cy"} <= set(entries[2])  # only the off-centre camera carries them
    # a hand-written INRIA entry: identity rotation at (1, 2, 3) sees the world point (1, 2, 13) at the centre
    entry = {"id": 0, "img_name": "a", "width": 100, "height": 80, "position": [1, 2, 3], "fx": 50, "fy": 50}
    entry["rotation"] = np.eye(3).tolist()
    path.write_text(json.dumps([entry]))
    (cam,) = load_cameras(path)
    p = cam.world_to_camera @ np.array([2.0, 2.0, 13.0, 1.0])
    assert (cam.fx * p[0] / p[2] + cam.cx, cam.fy * p[1] / p[2] + cam.cy) == pytest.approx((55.0, 40.0))


def test_nerf_reads_camera_angle_and_opengl_axes(tmp_path):
    # an OpenGL camera at the origin with identity transform looks down -z with +y up
    (tmp_path / "train").mkdir()
    from PIL import Image

    Image.new("RGB", (40, 30)).save(tmp_path / "train" / "r_0.png")
    frame = {"file_path": "./train/r_0", "transform_matrix": np.eye(4).tolist()}
    data = {"camera_angle_x": 2 * np.arctan(0.5), "frames": [frame]}
    (tmp_path / "transforms.json").write_text(json.dumps(data))
    (cam,) = load_cameras(tmp_path)  # a folder: finds transforms.json
    assert (cam.width, cam.height, cam.name) == (40, 30, "r_0")  # size from the image
    assert cam.fx == pytest.approx(40.0) and cam.fy == pytest.approx(40.0)  # fx = w / 2 / tan(angle / 2)
    np.testing.assert_allclose(cam.forward, [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(-cam.world_to_camera[1, :3], [0, 1, 0], atol=1e-12)  # image up = OpenGL +y
    # per-frame intrinsics win over the top level
    data["frames"][0].update({"fl_x": 20.0, "fl_y": 25.0, "w": 50, "h": 60, "cx": 24.0})
    (tmp_path / "transforms.json").write_text(json.dumps(data))
    (cam,) = load_cameras(tmp_path / "transforms.json")
    assert (cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height) == (20.0, 25.0, 24.0, 30.0, 50, 60)


def test_gsplat_npz_asset(shared_data):
    cams = load_cameras(shared_data / "scenes" / "garden_points_cameras.npz")
    assert len(cams) == 3 and all((c.width, c.height) == (648, 420) for c in cams)
    with np.load(shared_data / "scenes" / "garden_points_cameras.npz") as z:
        points = z["means3d"].astype(np.float64)
        np.testing.assert_allclose(cams[0].world_to_camera, z["viewmats"][0], atol=1e-5)
    # the real cameras see a good part of the real points in front of them, inside the image
    for cam in cams:
        uv, depth = _pixels(cam, points[::50])
        inside = (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < 648) & (uv[:, 1] >= 0) & (uv[:, 1] < 420)
        assert inside.mean() > 0.3
    # and their estimated world up makes the orbit's image up agree with theirs
    orbit = orbit_cameras(points, 4, 64, 48, cameras=cams)
    ref_up = resolve_up(None, cams)
    assert all(-c.world_to_camera[1, :3] @ ref_up > 0.5 for c in orbit)


BAD_FILES = {
    "not_json.json": ("this is { not json", "not valid JSON"),
    "empty_list.json": ("[]", "empty"),
    "empty_frames.json": ('{"frames": []}', "empty"),
    "unknown.json": ('{"hello": 1}', "unrecognised"),
    "missing_key.json": (
        '[{"id": 0, "width": 10, "height": 10, "position": [0, 0, 0], "fx": 5, "fy": 5}]',
        "missing the key 'rotation'",
    ),  # fmt: skip
    "bad_shape.json": (
        '[{"width": 10, "height": 10, "position": [0, 0], "rotation": [[1,0,0],[0,1,0],[0,0,1]],'
        ' "fx": 5, "fy": 5}]',
        r"position must have shape \(3,\)",
    ),  # fmt: skip
    "non_finite.json": (
        '[{"width": 10, "height": 10, "position": [0, NaN, 0], "rotation": [[1,0,0],[0,1,0],'
        '[0,0,1]], "fx": 5, "fy": 5}]',
        "non-finite",
    ),  # fmt: skip
    "not_rotation.json": (
        '[{"width": 10, "height": 10, "position": [0, 0, 0], "rotation": [[2,0,0],[0,1,0],'
        '[0,0,1]], "fx": 5, "fy": 5}]',
        "not a rotation",
    ),  # fmt: skip
    "bad_focal.json": (
        '[{"width": 10, "height": 10, "position": [0, 0, 0], "rotation": [[1,0,0],[0,1,0],'
        '[0,0,1]], "fx": -5, "fy": 5}]',
        "fx must be a positive",
    ),  # fmt: skip
    "nerf_no_focal.json": (
        '{"w": 4, "h": 4, "frames": [{"transform_matrix": [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]}',
        "no focal length",
    ),  # fmt: skip
    "nerf_no_size.json": (
        '{"camera_angle_x": 0.8, "frames": [{"file_path": "nothing", "transform_matrix": '
        "[[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]}",
        "no image size",
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_camera_files(tmp_path, name):
    text, message = BAD_FILES[name]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CameraError, match=message) as info:
        load_cameras(path)
    assert str(path) in str(info.value)  # every error names the file


def test_bad_camera_paths(tmp_path):
    with pytest.raises(CameraError, match="not found"):
        load_cameras(tmp_path / "missing.json")
    with pytest.raises(CameraError, match="none of"):
        load_cameras(tmp_path)
    np.savez(tmp_path / "pts.npz", means3d=np.zeros((3, 3)))
    with pytest.raises(CameraError, match="missing"):
        load_cameras(tmp_path / "pts.npz")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CameraError, match="pts.npz|binary.json"):
        load_cameras(tmp_path / "binary.json")
    with pytest.raises(CameraError, match="empty"):
        save_cameras(tmp_path / "x.json", [])
    with pytest.raises(CameraError, match="unknown camera format"):
        save_cameras(tmp_path / "x.json", _some_cameras(), format="colmap")
