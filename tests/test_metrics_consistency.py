"""Multi-view consistency from rendered depth (engine.metrics.consistency) against independent references:
hand-computed projections, torch's grid_sample, textured planes of Gaussians whose answer is known, an
analytic view-dependent colour, and a ray-cast occluder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine import metrics
from engine.cameras import Camera
from engine.render.sh import C1
from engine.scene import GaussianScene, rgb_to_sh_dc

SIZE = 96
DIST = 30.0
F_PX = 0.5 * SIZE / (1.2 / DIST)  # the 2.4-unit-wide plane region fills the image at DIST


def _plane(spacing=0.04, half=1.0, z=0.0, rgb=None, view_dep=0.0, opacity_logit=5.0) -> GaussianScene:
    """Flat Gaussians on z = `z` over [-half, half]^2, smooth texture (or constant `rgb`); `view_dep` puts
    an SH degree-1 coefficient on red: red += -C1 * view_dep * (x component of the viewing direction)."""
    t = torch.arange(-half + spacing / 2, half, spacing, dtype=torch.float64)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    n = xx.numel()
    means = torch.stack([xx.reshape(-1), yy.reshape(-1), torch.full((n,), z, dtype=torch.float64)], -1)
    if rgb is None:
        col = torch.stack(
            [
                0.5 + 0.25 * torch.sin(2 * math.pi * means[:, 0]),
                0.5 + 0.25 * torch.cos(2 * math.pi * means[:, 1] / 0.8),
                torch.full((n,), 0.4, dtype=torch.float64),
            ],
            -1,
        )
    else:
        col = torch.tensor(rgb, dtype=torch.float64).expand(n, 3)
    sh = torch.zeros(n, 4, 3, dtype=torch.float64)
    sh[:, 0] = rgb_to_sh_dc(col)
    sh[:, 3, 0] = view_dep
    return GaussianScene(
        means=means,
        quats=torch.tensor([1.0, 0, 0, 0], dtype=torch.float64).expand(n, 4).clone(),
        log_scales=torch.log(torch.tensor([0.75 * spacing, 0.75 * spacing, 0.002], dtype=torch.float64))
        .expand(n, 3)
        .clone(),
        opacity_logits=torch.full((n,), opacity_logit, dtype=torch.float64),
        sh=sh,
    )


def _face_on(x: float, y: float = 0.3, roll_deg: float = 0.0, shift_px: float = 0.0) -> Camera:
    """Looking along +z from (x, y, -DIST), principal point shifted so the plane's centre is in the middle
    of the image (off-axis) plus `shift_px` in x: the plane has the same depth everywhere in such views."""
    a = math.radians(roll_deg)
    r = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.0]])
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = -r @ np.array([x, y, -DIST])
    c = r @ -np.array([x, y, -DIST])  # the origin in camera space
    cx = SIZE / 2 - F_PX * c[0] / c[2] + 0.37 + shift_px
    return Camera(m, F_PX, F_PX, cx, SIZE / 2 - F_PX * c[1] / c[2], SIZE, SIZE)


def _orbit(azimuth_deg: float) -> Camera:
    a = math.radians(azimuth_deg)
    eye = np.array([DIST * math.sin(a), 0.0, -DIST * math.cos(a)])
    fov = 2 * math.degrees(math.atan(1.2 / DIST))
    return Camera.look_at(eye, np.zeros(3), np.array([0.0, -1.0, 0.0]), fov, SIZE, SIZE)


def _errors(scene, cams, config=None, extra=None):
    im, al, de = metrics.render_views(scene, cams, backend="torch")
    sets = {"x": im, **(extra(im) if extra else {})}
    return metrics.consistency_errors(sets, de, al, cams, config), (im, al, de)


# ------------------------------------------------------------------------------------------ geometry
def test_project_points_matches_hand_computation():
    # camera at (10, 0, 0) looking at the origin, image y down = world y down: axes x_cam = +z_world,
    # y_cam = +y_world, z_cam = -x_world; f = 0.5 * 48 / tan(45 deg) = 24, c = (32, 24)
    cam = Camera.look_at(np.array([10.0, 0, 0]), np.zeros(3), np.array([0.0, -1, 0]), 90.0, 64, 48)
    uv, z = metrics.project_points(torch.tensor([[2.0, 0.3, 0.5]], dtype=torch.float64), cam)
    # camera coordinates (0.5, 0.3, 8): u = 24 * 0.5 / 8 + 32, v = 24 * 0.3 / 8 + 24
    assert z.item() == pytest.approx(8.0, abs=1e-12)
    assert uv[0].tolist() == pytest.approx([33.5, 24.9], abs=1e-12)


def test_unproject_then_project_returns_the_pixel_centre():
    cam = _face_on(0.4, roll_deg=20)
    idx = torch.tensor([0, 5 * SIZE + 10, SIZE * SIZE - 1])
    pts = metrics.unproject_pixels(idx, torch.tensor([3.0, 30.0, 0.5]), cam)
    uv, z = metrics.project_points(pts, cam)
    assert z.tolist() == pytest.approx([3.0, 30.0, 0.5], abs=1e-9)
    ref = torch.tensor([[0.5, 0.5], [10.5, 5.5], [SIZE - 0.5, SIZE - 0.5]], dtype=torch.float64)
    assert torch.allclose(uv, ref, atol=1e-9)


def test_bilinear_sampling_matches_grid_sample():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 5, 7, generator=g, dtype=torch.float64)
    uv = torch.rand(200, 2, generator=g, dtype=torch.float64) * torch.tensor([6.0, 4.0]) + 0.5
    ours = metrics.sample_bilinear(img, uv)
    grid = (2 * uv / torch.tensor([7.0, 5.0]) - 1)[None, None]  # align_corners=False: pixel centres at +.5
    ref = F.grid_sample(img[None], grid, mode="bilinear", align_corners=False)[0, :, 0]
    assert torch.allclose(ours, ref, atol=1e-12)
    # the exact corners of the sampling domain are pixel centres
    corners = metrics.sample_bilinear(img, torch.tensor([[0.5, 0.5], [6.5, 4.5]], dtype=torch.float64))
    assert torch.allclose(corners.T, torch.stack([img[:, 0, 0], img[:, 4, 6]]), atol=1e-12)


def test_view_pairs_short_is_adjacent_and_long_is_ninety_degrees():
    cams = [_orbit(a) for a in range(0, 360, 45)]
    pairs = metrics.view_pairs(cams)
    assert [i for i, _, _ in pairs["short"]] == list(range(8))
    assert all((j - i) % 8 in (1, 7) for i, j, _ in pairs["short"])  # a neighbour on the ring
    assert all(a == pytest.approx(45.0) for *_, a in pairs["short"])
    assert all(abs(j - i) % 8 in (2, 6) and a == pytest.approx(90.0) for i, j, a in pairs["long"])
    assert len(pairs["long"]) == 8
    # no view near 90 degrees away: no long-range pair
    assert metrics.view_pairs([_orbit(0), _orbit(20)])["long"] == []


# ------------------------------------------------------------------------------------------ planes
def test_consistent_plane_gives_near_zero_error_and_beats_nearest_pixel():
    """Two off-axis views of a flat textured plane (same depth everywhere; the image moves by 0.4 px): the
    sub-pixel correspondences find the same colour; a nearest-pixel lookup (written here) does not."""
    cams = [_face_on(-0.31), _face_on(0.31, shift_px=0.4)]
    out, (im, al, de) = _errors(_plane(), cams)
    assert out["consistency_short_coverage"] > 0.85
    assert out["consistency_short_x"] < 1e-3
    corr = metrics.correspondences(de[0], al[0], cams[0], de[1], al[1], cams[1])
    nearest = torch.floor(corr.uv_b).long()
    col_a = im[0].reshape(3, -1)[:, corr.index_a].double()
    col_b = im[1][:, nearest[:, 1], nearest[:, 0]].double()
    assert float((col_a - col_b).abs().mean()) > 5 * out["consistency_short_x"]  # measured: 6.8x
    # rolled and zoomed views: still only bilinear interpolation error of a smooth texture
    cams = [_face_on(0.0), _face_on(0.05, roll_deg=30)]
    out, _ = _errors(_plane(), cams)
    assert out["consistency_short_x"] < 2e-3 and out["consistency_short_coverage"] > 0.85


def _view_dependent_reference(cams, k: float) -> float:
    """Mean over the plane of |red_A - red_B| / 3 for red += -C1 k d_x, d = unit(point - camera centre)."""
    t = np.linspace(-0.9, 0.9, 181)
    px, py = np.meshgrid(t, t)
    diffs = []
    for c in cams:
        d = np.stack([px, py, np.zeros_like(px)], -1) - c.position
        diffs.append(-C1 * k * d[..., 0] / np.linalg.norm(d, axis=-1))
    return float(np.abs(diffs[0] - diffs[1]).mean() / 3)


def test_view_dependent_colour_gives_the_hand_computed_difference():
    cams = [_face_on(-8.0), _face_on(8.0)]  # 30.5 degrees apart, the plane at constant depth in both
    k = 0.4
    expected = _view_dependent_reference(cams, k)
    assert expected == pytest.approx(C1 * k * 2 * 8 / math.hypot(8, DIST) / 3, rel=0.01)  # ~0.0336
    base, _ = _errors(_plane(), cams)
    out, _ = _errors(_plane(view_dep=k), cams)
    assert base["consistency_short_x"] < 1e-3
    assert out["consistency_short_x"] == pytest.approx(expected, rel=0.03)


def test_long_range_pair_on_a_plane_seen_ninety_degrees_apart():
    """Views at -45 and +45 degrees: a long-range pair. The view-dependent term adds the analytic
    difference on top of the representation's own (small) inconsistency of a tilted plane."""
    cams = [_orbit(-45), _orbit(45)]
    k = 0.3
    soft = dict(opacity_logit=0.0)
    base, _ = _errors(_plane(**soft), cams)
    out, _ = _errors(_plane(view_dep=k, **soft), cams)
    assert base["consistency_long_pairs"] == 2 and base["consistency_long_angle_deg"] == pytest.approx(90)
    assert base["consistency_long_coverage"] > 0.5
    expected = _view_dependent_reference(cams, k)  # ~0.069
    assert base["consistency_long_x"] < 0.15 * expected
    assert abs(out["consistency_long_x"] - expected) < base["consistency_long_x"] + 0.02 * expected


def _hidden_in_b(cam_a: Camera, cam_b: Camera, index: torch.Tensor, occ_half: float, occ_z: float):
    """Ray-cast reference: for A's pixels `index`, whether the first surface hit (occluder square at z =
    occ_z, else the plane z = 0) is a plane point that B cannot see because the occluder is in the way."""
    x = (index % cam_a.width).double().numpy() + 0.5
    y = (index // cam_a.width).double().numpy() + 0.5
    d_cam = np.stack([(x - cam_a.cx) / cam_a.fx, (y - cam_a.cy) / cam_a.fy, np.ones_like(x)], -1)
    d = d_cam @ cam_a.camera_to_world[:3, :3].T
    o = cam_a.position

    def hit(origin, dirs, z):
        t = (z - origin[..., 2]) / dirs[..., 2]
        return origin + t[..., None] * dirs

    on_occ = np.all(np.abs(hit(o, d, occ_z)[:, :2]) <= occ_half, axis=1)
    p = hit(o, d, 0.0)
    seg = hit(cam_b.position, p - cam_b.position, occ_z)  # where B's ray to p crosses z = occ_z
    blocked = np.all(np.abs(seg[:, :2]) <= occ_half, axis=1)
    return ~on_occ & blocked


def test_occluded_pixels_are_excluded():
    cams = [_face_on(-8.0), _face_on(8.0)]
    occ_half, occ_z = 0.3, -3.0
    scene = _plane()
    occluder = _plane(spacing=0.03, half=occ_half, z=occ_z, rgb=(0.9, 0.1, 0.1))
    both = GaussianScene(
        **{f: torch.cat([getattr(scene, f), getattr(occluder, f)]) for f in ("means", "quats", "log_scales")},
        opacity_logits=torch.cat([scene.opacity_logits, occluder.opacity_logits]),
        sh=torch.cat([scene.sh, occluder.sh]),
    )
    out, (im, al, de) = _errors(both, cams)
    no_test, _ = _errors(both, cams, metrics.ConsistencyConfig(rel_depth_tol=1e9))
    assert out["consistency_short_x"] < 0.01  # occluder edges blur a little; interior matches
    assert no_test["consistency_short_x"] > 5 * out["consistency_short_x"] + 0.02
    corr = metrics.correspondences(de[0], al[0], cams[0], de[1], al[1], cams[1])
    obj = torch.nonzero(al[0].reshape(-1) >= 0.9).squeeze(1)
    hidden = _hidden_in_b(cams[0], cams[1], obj, occ_half, occ_z)
    kept = torch.zeros(SIZE * SIZE, dtype=torch.bool)
    kept[corr.index_a] = True
    kept = kept[obj].numpy()
    assert hidden.sum() > 300  # a real occluded region (~0.2 of the plane's pixels)
    assert (kept & hidden).sum() < 0.03 * hidden.sum()  # hidden points are not compared
    assert kept[~hidden].mean() > 0.85  # the rest mostly are


def test_same_view_is_exactly_consistent_and_size_mismatch_is_allowed():
    scene = _plane()
    cam = _face_on(0.0)
    out, _ = _errors(scene, [cam, cam])
    assert out["consistency_short_x"] == pytest.approx(0.0, abs=1e-12)
    small = cam.resized(48)  # half resolution: a differently sized second view
    im, al, de = metrics.render_views(scene, [cam, small], backend="torch")
    o2 = metrics.consistency_errors({"x": im}, de, al, [cam, small])
    assert o2["consistency_short_coverage"] > 0.8 and o2["consistency_short_x"] < 0.02
