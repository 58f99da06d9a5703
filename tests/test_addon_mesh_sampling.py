"""Blender add-on, bpy-free: Gaussians sampled on a mesh surface."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blender_addon.attributes import SH_C0, linear_to_srgb  # noqa: E402
from blender_addon.mesh_sampling import (  # noqa: E402
    SamplingConfig,
    SurfaceSource,
    matrices_to_quats,
    sample_surface,
)

# a 2 x 1 rectangle in the plane z = 0.5 made of two triangles (left half: triangle 0, right half: 1)
VERTS = np.array([[0, 0, 0.5], [1, 0, 0.5], [1, 1, 0.5], [0, 1, 0.5], [2, 0, 0.5], [2, 1, 0.5]], float)
TRIS = np.array([[0, 1, 2], [0, 2, 3], [1, 4, 5], [1, 5, 2]])


def quat_matrix(q):
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def dc_to_linear(arrays):
    from blender_addon.attributes import srgb_to_linear

    return srgb_to_linear(arrays.sh[:, 0, :] * SH_C0 + 0.5)


def test_samples_lie_on_the_surface_uniformly_as_flat_discs():
    out = sample_surface(SurfaceSource(VERTS, TRIS), SamplingConfig(count=4000, seed=1))
    out.check()
    assert out.num_gaussians == 4000 and out.sh_degree == 0
    m = out.means
    assert np.all((m[:, 0] >= -1e-6) & (m[:, 0] <= 2 + 1e-6) & (m[:, 1] >= -1e-6) & (m[:, 1] <= 1 + 1e-6))
    np.testing.assert_allclose(m[:, 2], 0.5, atol=1e-6)
    assert abs((m[:, 0] < 1).mean() - 0.5) < 0.05  # area-weighted: both unit squares get half
    spacing = np.sqrt(2.0 / 4000)
    np.testing.assert_allclose(
        np.exp(out.log_scales[0]), [0.7 * spacing, 0.7 * spacing, 0.05 * spacing], rtol=1e-5
    )
    # the thin axis (local z) is the face normal (+-z)
    for q in out.quats[:50]:
        assert abs(abs(quat_matrix(q.astype(float))[2, 2]) - 1) < 1e-5
    assert np.allclose(1 / (1 + np.exp(-out.opacity_logits)), 0.95)


def test_matrices_to_quats_inverts_quaternion_matrices():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(300, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q *= np.sign(q[:, :1])
    back = matrices_to_quats(np.stack([quat_matrix(x) for x in q]))
    np.testing.assert_allclose(back, q, atol=1e-9)


def test_colour_sources_material_vertex_colours_texture():
    tri_colours = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1]], float)  # left red, right blue
    out = sample_surface(SurfaceSource(VERTS, TRIS, triangle_colours=tri_colours), SamplingConfig(count=500))
    lin = dc_to_linear(out)
    left = out.means[:, 0] < 1
    np.testing.assert_allclose(lin[left], np.broadcast_to([1, 0, 0], lin[left].shape), atol=1e-5)
    np.testing.assert_allclose(lin[~left], np.broadcast_to([0, 0, 1], lin[~left].shape), atol=1e-5)

    # vertex colours: green at x=0 corners, black elsewhere -> interpolated, brighter towards x = 0
    corner = np.zeros((4, 3, 3))
    corner[..., 1] = (VERTS[TRIS][..., 0] == 0).astype(float)
    out = sample_surface(
        SurfaceSource(VERTS, TRIS, tri_colours, corner_colours=corner), SamplingConfig(count=500)
    )
    g = dc_to_linear(out)[:, 1]
    assert np.corrcoef(g, -out.means[:, 0])[0, 1] > 0.8

    # image texture: a 2x2 texture, u < 0.5 white, u >= 0.5 yellow; uv = (x / 2, y)
    tex = np.zeros((2, 2, 3))
    tex[:, 0] = [1, 1, 1]
    tex[:, 1] = [1, 1, 0]
    uvs = VERTS[TRIS][..., :2] / [2.0, 1.0]
    src = SurfaceSource(
        VERTS, TRIS, tri_colours, corner_uvs=uvs, textures=[tex], triangle_texture=np.zeros(4, int)
    )
    out = sample_surface(src, SamplingConfig(count=500))
    lin = dc_to_linear(out)
    left = out.means[:, 0] < 0.99
    right = out.means[:, 0] > 1.01
    np.testing.assert_allclose(lin[left], np.ones_like(lin[left]), atol=1e-5)
    np.testing.assert_allclose(lin[right], np.broadcast_to([1, 1, 0], lin[right].shape), atol=1e-5)
    assert np.allclose(linear_to_srgb(np.array([1.0])), 1.0)


def test_degenerate_meshes_and_bad_settings_raise_clear_errors():
    with pytest.raises(ValueError, match="no faces with area"):
        sample_surface(SurfaceSource(VERTS, np.zeros((0, 3), int)))
    with pytest.raises(ValueError, match="no faces with area"):
        sample_surface(SurfaceSource(VERTS, np.array([[0, 1, 4]])))  # collinear
    with pytest.raises(ValueError, match="count must be positive"):
        sample_surface(SurfaceSource(VERTS, TRIS), SamplingConfig(count=0))
