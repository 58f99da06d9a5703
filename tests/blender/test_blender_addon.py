"""The extension installed from the built zip into real Blender: import/export, display, render,
register/unregister hygiene."""

from __future__ import annotations

import importlib
import sys
import time

import numpy as np
import pytest

from .conftest import render_pixels

FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")


def splatfile(module):
    return sys.modules[module + ".vendor.shared_protocol.splatfile"]


def test_installed_extension_uses_its_bundled_wheel_and_vendored_package(addon):
    import bpy
    import zmq  # from the pyzmq wheel the extension bundles (the test venv has no pyzmq of its own)

    assert "extensions" in zmq.__file__, zmq.__file__
    assert hasattr(bpy.types, "SPLATBRUSH_OT_stylize") and hasattr(bpy.types.Scene, "splatbrush")
    __import__(addon + ".vendor.shared_protocol.client")
    assert "engine" not in sys.modules and "torch" not in sys.modules
    # a new scene's Stylize settings start on the project's one default preset
    default = importlib.import_module(addon + ".vendor.shared_protocol.payloads").DEFAULT_PRESET
    assert bpy.context.scene.splatbrush.preset == default == "painterly"


@pytest.mark.parametrize("name", ["donut.ply", "inria_sh3_scene.ply"])
def test_import_then_export_is_bit_exact(addon, fresh_scene, shared_data, tmp_path, name):
    import bpy

    src = shared_data / "scenes" / name
    assert bpy.ops.splatbrush.import_gaussians(filepath=str(src)) == {"FINISHED"}
    obj = bpy.context.active_object
    original = splatfile(addon).read_splats(src)
    assert len(obj.data.vertices) == original.num_gaussians
    out = tmp_path / f"export_{name}"
    assert bpy.ops.splatbrush.export_gaussians(filepath=str(out)) == {"FINISHED"}
    back = splatfile(addon).read_splats(out)
    for field in FIELDS:
        assert getattr(back, field).tobytes() == getattr(original, field).tobytes(), field
    assert list(back.extra) == list(original.extra)
    for key, values in original.extra.items():
        assert back.extra[key].tobytes() == values.tobytes(), key
    if name == "donut.ply":  # standard INRIA layout without extras: the very same bytes
        assert out.read_bytes() == src.read_bytes()


def test_bad_file_is_reported_not_raised(addon, fresh_scene, tmp_path):
    import bpy

    bad = tmp_path / "broken.ply"
    bad.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nend_header\n1\n")
    with pytest.raises(RuntimeError, match="broken.ply"):  # bpy.ops turns an ERROR report into RuntimeError
        bpy.ops.splatbrush.import_gaussians(filepath=str(bad))
    assert not bpy.data.objects


def footprint(module):
    import bpy

    own = module.split(".")[-1]

    def ours(fn):
        return own in (getattr(fn, "__module__", "") or "")

    handlers = [
        f"{name}:{fn.__name__}"
        for name in dir(bpy.app.handlers)
        if isinstance(getattr(bpy.app.handlers, name), list)
        for fn in getattr(bpy.app.handlers, name)
        if ours(fn)
    ]
    menus = [
        fn.__name__
        for menu in (bpy.types.TOPBAR_MT_file_import, bpy.types.TOPBAR_MT_file_export)
        for fn in getattr(menu.draw, "_draw_funcs", [])
        if ours(fn)
    ]
    link = sys.modules.get(module + ".engine_link")
    return {
        "types": sorted(n for n in dir(bpy.types) if n.upper().startswith("SPLATBRUSH")),
        "scene_prop": hasattr(bpy.types.Scene, "splatbrush"),
        "wm_prop": hasattr(bpy.types.WindowManager, "splatbrush"),
        "handlers": handlers,
        "menus": menus,
        "timer": bool(link and bpy.app.timers.is_registered(link._timer)),
        "ops": operator_exists("splatbrush.stylize"),
    }


def operator_exists(idname: str) -> bool:
    import bpy

    group, name = idname.split(".")
    try:
        getattr(getattr(bpy.ops, group), name).get_rna_type()
    except (KeyError, AttributeError):
        return False
    return True


def test_register_unregister_twice_leaves_nothing_behind(addon):
    import bpy

    enabled = footprint(addon)
    assert enabled["types"] and enabled["scene_prop"] and enabled["wm_prop"]
    assert enabled["handlers"] == ["load_pre:cancel_on_load"] and len(enabled["menus"]) == 2
    for _ in range(2):
        link = sys.modules[addon + ".engine_link"]
        bpy.app.timers.register(link._timer, first_interval=100)  # as if a job were running
        bpy.ops.preferences.addon_disable(module=addon)
        gone = footprint(addon)
        assert gone["types"] == [] and not gone["scene_prop"] and not gone["wm_prop"], gone
        assert gone["handlers"] == [] and gone["menus"] == [] and not gone["timer"], gone
        assert not gone["ops"]
        bpy.ops.preferences.addon_enable(module=addon)
        assert footprint(addon) == enabled


def test_render_of_imported_splats_shows_their_colours(addon, fresh_scene, shared_data, out_dir):
    import bpy
    from mathutils import Vector

    scene = fresh_scene
    bpy.ops.splatbrush.import_gaussians(filepath=str(shared_data / "scenes" / "donut.ply"))
    obj = bpy.context.active_object
    arrays = sys.modules[addon + ".splats"].arrays_from_object(obj)
    centre = Vector(arrays.means.mean(0).tolist())
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    cam.location = centre + Vector((0.0, -0.3, 0.25))
    cam.rotation_euler = (centre - cam.location).to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    scene.render.resolution_x = scene.render.resolution_y = 128
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = True
    scene.view_settings.view_transform = "Standard"  # show the splats' sRGB colours as they are
    path = out_dir / f"donut_render_{bpy.app.version_string.split()[0]}.png"
    px = render_pixels(scene, path)
    covered = px[..., 3] > 0.5
    assert 0.1 < covered.mean() < 0.95, covered.mean()  # the donut is there, and framed
    shown = px[covered][:, :3].mean(0)
    dc = np.clip(0.5 + 0.28209479177387814 * arrays.sh[:, 0, :], 0, 1)
    weight = 1 / (1 + np.exp(-arrays.opacity_logits))
    expected = (dc * weight[:, None]).sum(0) / weight.sum()
    assert np.abs(shown - expected).max() < 0.2, (shown, expected)  # the splats' own colours
    assert px[covered][:, :3].std(0).max() > 0.03  # not one flat colour


class _FakeJob:
    report = {"fake": True}

    def __init__(self, result):
        self._events = [
            {"state": "running", "step": 1, "total_steps": 2},
            {"state": "running", "step": 2, "total_steps": 2, "preview": np.full((6, 8, 3), 200, np.uint8)},
            {"state": "done", "step": 2, "total_steps": 2},
        ]
        self._result = result

    def poll(self):
        return [self._events.pop(0)] if self._events else []

    def status(self):
        return {"state": "running"}

    def result(self):
        return self._result

    def cancel(self):
        pass


class _FakeClient:
    def __init__(self, job):
        self.job, self.timeout = job, 1.0

    def ping(self, timeout=None):
        return {}

    def submit(self, **kwargs):
        return self.job

    def close(self):
        pass


def test_timer_path_mirrors_progress_and_preview_then_imports_the_result(addon, fresh_scene, shared_data):
    """The UI path (a bpy.app.timers callback) driven by hand, a scripted client in place of an engine."""
    import importlib

    import bpy

    link = importlib.import_module(addon + ".engine_link")
    jobs = importlib.import_module(addon + ".jobs")
    splats = importlib.import_module(addon + ".splats")
    bpy.ops.splatbrush.import_gaussians(filepath=str(shared_data / "scenes" / "donut.ply"))
    source = bpy.context.active_object
    arrays = splats.arrays_from_object(source)
    styled = splatfile(addon).SplatArrays(
        arrays.means, arrays.quats, arrays.log_scales, arrays.opacity_logits, arrays.sh * 0.5
    )
    client = _FakeClient(_FakeJob(styled))
    task = jobs.StylizeTask(
        jobs.EngineOptions(),
        arrays,
        np.zeros((4, 4, 3), np.uint8),
        None,
        {},
        client_factory=lambda o, timeout: client,
    )
    link.start(bpy.context, task, source, synchronous=False)
    assert bpy.app.timers.is_registered(link._timer) and link.is_running()
    state = bpy.context.window_manager.splatbrush
    fractions, tick_s = [], []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # what Blender's event loop does every TICK_SECONDS
        t0 = time.perf_counter()
        again = link._timer()
        tick_s.append(time.perf_counter() - t0)
        fractions.append(state.progress)
        if again is None:
            break
        time.sleep(0.02)
    assert again is None and not link.is_running() and not state.running
    assert fractions[-1] == 1.0
    assert max(tick_s) < 0.5, max(tick_s)  # the tick that imports the result is the longest (45k splats)
    preview = bpy.data.images[link.PREVIEW_IMAGE]
    assert tuple(preview.size) == (8, 6)
    px = np.empty(8 * 6 * 4, np.float32)
    preview.pixels.foreach_get(px)
    assert np.allclose(px.reshape(-1, 4)[:, :3], 200 / 255, atol=1e-3)
    result = bpy.data.objects[link.last_run.result_name]
    assert splats.arrays_from_object(result).sh.tobytes() == (arrays.sh * 0.5).tobytes()
    bpy.app.timers.unregister(link._timer) if bpy.app.timers.is_registered(link._timer) else None


def test_scene_cameras_match_blenders_own_projection(addon, fresh_scene):
    """Views from scene cameras, moved into a transformed object's space, project like Blender does."""
    import importlib

    import bpy
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    scene_data = importlib.import_module(addon + ".scene_data")
    views_mod = importlib.import_module(addon + ".views")
    scene = fresh_scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 320, 200, 100
    bpy.ops.mesh.primitive_cube_add(
        size=1.0, location=(0.5, -0.2, 0.3), rotation=(0.2, 0.4, -0.3), scale=(1.5,) * 3
    )
    cube = bpy.context.active_object
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    cam.location = (3.0, -4.0, 2.5)
    cam.rotation_euler = (Vector((0.5, -0.2, 0.3)) - cam.location).to_track_quat("-Z", "Y").to_euler()
    cam.data.lens, cam.data.shift_x, cam.data.sensor_fit = 42.0, 0.1, "AUTO"
    scene.camera = cam
    bpy.context.view_layer.update()
    settings = scene.splatbrush
    settings.camera_source = "ALL"
    (view,) = scene_data.camera_views(bpy.context, settings, cube, 160)
    assert (view["width"], view["height"]) == (160, 100)
    local = np.array([v.co[:] for v in cube.data.vertices])
    px = views_mod.project(view, local)
    for p_local, p_px in zip(local, px, strict=True):
        ndc = world_to_camera_view(
            scene, cam, cube.matrix_world @ Vector(p_local)
        )  # (0..1, 0..1) from bottom
        np.testing.assert_allclose(p_px, [ndc.x * 160, (1 - ndc.y) * 100], atol=1e-3)


class _Layout:
    """Stands in for bpy.types.UILayout (which cannot be made outside a UI): records what a panel draws and
    checks that every property and operator it names exists."""

    def __init__(self, log):
        self.log = log

    def _child(self, *args, **kwargs):
        return _Layout(self.log)

    row = column = box = split = _child

    def prop(self, data, name, **kwargs):
        key = name.strip('[]"')
        if name.startswith("["):
            assert key in data.keys(), f"{data!r} has no custom property {key}"
        else:
            assert name in data.bl_rna.properties, f"{data!r} has no property {name}"
        self.log.append(("prop", key, kwargs.get("text")))

    def operator(self, idname, **kwargs):
        self.log.append(("operator", idname))

    def label(self, **kwargs):
        self.log.append(("label", kwargs.get("text", "")))

    def progress(self, **kwargs):
        self.log.append(("progress", kwargs.get("factor")))

    def template_icon(self, **kwargs):
        self.log.append(("icon", kwargs.get("icon_value")))


def test_sidebar_panel_draws_for_splats_and_meshes(addon, fresh_scene, shared_data):
    import bpy

    panel_cls = bpy.types.SPLATBRUSH_PT_main
    for make in ("splats", "mesh", "none"):
        if make == "splats":
            bpy.ops.splatbrush.import_gaussians(filepath=str(shared_data / "scenes" / "donut.ply"))
        elif make == "mesh":
            bpy.ops.mesh.primitive_cube_add()
        else:
            bpy.context.view_layer.objects.active = None
        log = []
        panel = type("P", (), {"layout": _Layout(log)})()
        panel_cls.draw(panel, bpy.context)
        ops = [entry[1] for entry in log if entry[0] == "operator"]
        assert "splatbrush.stylize" in ops and "splatbrush.import_gaussians" in ops
        for idname in ops:
            assert operator_exists(idname), idname
        props = [entry[1] for entry in log if entry[0] == "prop"]
        assert "style_image" in props and "preset" in props
        if make == "splats":
            drawn = {entry[2] for entry in log if entry[0] == "prop"}  # the modifier's inputs, any version
            assert {"Size", "Points"} <= drawn
        if make == "mesh":
            assert "mesh_samples" in props
