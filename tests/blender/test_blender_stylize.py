"""Stylize from Blender against a REAL engine process that the add-on starts on demand
(`<.venv python> -m engine serve` on a free loopback port, the weight-free preset, a few steps)."""

from __future__ import annotations

import importlib
import sys

import numpy as np


def configure(addon, engine_python, tmp_path, free_port):
    import bpy

    prefs = bpy.context.preferences.addons[addon].preferences
    prefs.engine_mode = "LOCAL"
    prefs.local_address = f"tcp://127.0.0.1:{free_port}"
    prefs.auto_start = True
    prefs.python_path = str(engine_python)
    prefs.state_dir = str(tmp_path / "engine-state")
    prefs.device = "cpu"
    return prefs


def render_side_by_side(source, result, out_dir):
    """A small Cycles render of the original (left) and the stylized copy (right), saved to look at."""
    import bpy
    from mathutils import Matrix, Vector

    scene = bpy.context.scene
    result.matrix_world = Matrix.Translation(Vector((0.5, 0, 0))) @ source.matrix_world
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    target = source.matrix_world.translation + Vector((0.25, 0, 0))
    cam.location = target + Vector((0, -1.6, 0.9))
    cam.rotation_euler = (target - cam.location).to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 8
    scene.render.resolution_x, scene.render.resolution_y = 192, 96
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = True
    scene.view_settings.view_transform = "Standard"
    scene.render.filepath = str(out_dir / f"donut_stylized_{bpy.app.version_string.split()[0]}.png")
    bpy.ops.render.render(write_still=True)


def test_stylize_splats_against_a_real_engine(
    addon, fresh_scene, shared_data, engine_python, tmp_path, out_dir, free_port
):
    import bpy

    configure(addon, engine_python, tmp_path, free_port)
    splats = sys.modules[addon + ".splats"]
    link = sys.modules[addon + ".engine_link"]
    bpy.ops.splatbrush.import_gaussians(filepath=str(shared_data / "scenes" / "donut.ply"))
    source = bpy.context.active_object
    source.location = (1.0, 2.0, 0.5)
    source.rotation_euler = (0.3, 0.0, 1.0)
    source.scale = (2.0, 2.0, 2.0)
    bpy.context.view_layer.update()
    before = splats.arrays_from_object(source)

    settings = fresh_scene.splatbrush
    settings.style_image = str(shared_data / "styles" / "vg_starry_night.jpg")
    settings.preset = "preview"
    settings.steps = 2
    settings.size = 32
    settings.camera_source = "ORBIT"
    settings.orbit_views = 2
    try:
        assert bpy.ops.splatbrush.stylize() == {"FINISHED"}  # synchronous under background mode
        run = link.last_run
        assert run.task.status.state == "done", run.task.status.message
        result_obj = bpy.data.objects[run.result_name]
        after = splats.arrays_from_object(result_obj)
        # geometry kept exactly, colours changed, the original untouched, same transform
        for field in ("means", "quats", "log_scales", "opacity_logits"):
            assert getattr(after, field).tobytes() == getattr(before, field).tobytes(), field
        changed = np.abs(after.sh[:, 0] - before.sh[:, 0]).max(axis=1) > 1e-6
        assert changed.mean() > 0.5, changed.mean()
        again = splats.arrays_from_object(source)
        assert again.sh.tobytes() == before.sh.tobytes()
        assert np.allclose(np.array(result_obj.matrix_world), np.array(source.matrix_world), atol=1e-5)
        assert result_obj.modifiers.get(splats.MODIFIER) is not None
        state = bpy.context.window_manager.splatbrush
        assert state.progress == 1.0 and not state.running
        timings = run.task.status.timings
        print("stylize timings (s):", {k: round(v, 3) for k, v in timings.items()})
        render_side_by_side(source, result_obj, out_dir)
    finally:
        link.stop_engines()


def test_a_mesh_is_sampled_on_its_surface_with_its_material_colour(addon, fresh_scene):
    """What Stylize sends for a mesh (the engine run itself is the same as for splats, tested above)."""
    import bpy

    scene_data = importlib.import_module(addon + ".scene_data")
    sampling = importlib.import_module(addon + ".mesh_sampling")
    bpy.ops.mesh.primitive_uv_sphere_add(radius=1.0, location=(3, 0, 0))
    sphere = bpy.context.active_object
    sphere.modifiers.new("subdiv", "SUBSURF")  # sampled after modifiers
    mat = bpy.data.materials.new("red")
    if bpy.app.version < (5, 0, 0):
        mat.use_nodes = True
    mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.8, 0.05, 0.05, 1)
    sphere.data.materials.append(mat)
    source = scene_data.surface_source(sphere, bpy.context.evaluated_depsgraph_get())
    assert len(source.triangles) > 2 * len(sphere.data.polygons)  # the subdivided, evaluated mesh
    gaussians = sampling.sample_surface(source, sampling.SamplingConfig(count=3000))
    radius = np.linalg.norm(gaussians.means, axis=1)  # object-local: the sphere is centred at its origin
    assert gaussians.num_gaussians == 3000 and np.abs(radius - 1).max() < 0.03
    srgb = 0.5 + 0.28209479177387814 * gaussians.sh[:, 0]
    expected = [0.8 ** (1 / 2.4) * 1.055 - 0.055, 0.05 ** (1 / 2.4) * 1.055 - 0.055]
    assert np.allclose(srgb[:, 0], expected[0], atol=1e-4) and np.allclose(
        srgb[:, 1:], expected[1], atol=1e-4
    )
    settings = fresh_scene.splatbrush
    assert settings.camera_source == "AUTO"  # the default: no camera in the scene -> orbit views
    views = scene_data.camera_views(bpy.context, settings, sphere, 64)
    assert len(views) == settings.orbit_views
