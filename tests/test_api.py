"""The scripting API exported from `engine`, end to end on a real scene."""

from __future__ import annotations

import torch

import engine


def test_api_load_orbit_render_save(shared_data, tmp_path):
    scene = engine.load_scene(shared_data / "scenes" / "donut.ply")
    assert scene.num_gaussians == 45_624
    cams = engine.orbit_cameras(scene, 4, 96, 96)
    assert len(cams) == 4 and all(isinstance(c, engine.Camera) for c in cams)
    out = engine.render(scene, cams[0])
    assert out.image.shape == (96, 96, 3) and out.alpha.shape == (96, 96) and out.depth.shape == (96, 96)
    assert 0.0 <= out.image.min() and out.image.max() <= 1.0
    covered = out.alpha > 0.5
    assert 0.05 < covered.float().mean() < 0.95, "the object should fill part of the frame"
    assert (out.depth[covered] > 0).all()

    engine.save_scene(scene, tmp_path / "copy.ply")
    again = engine.load_scene(tmp_path / "copy.ply")
    assert again.geometry_equal(scene) and torch.equal(again.sh, scene.sh)

    engine.save_cameras(tmp_path / "cameras.json", cams)
    loaded = engine.load_cameras(tmp_path / "cameras.json")
    assert len(loaded) == 4
    for a, b in zip(loaded, cams, strict=True):
        assert (a.width, a.height) == (b.width, b.height)
        assert abs(a.fx - b.fx) < 1e-6 and abs(a.world_to_camera - b.world_to_camera).max() < 1e-6
