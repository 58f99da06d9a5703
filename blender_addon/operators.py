"""Operators: import / export 3DGS files (File menu and drag-and-drop), Stylize, Cancel.

Errors are caught here and shown with `self.report` plus a hint; the heavy lifting lives in bpy-free modules.
"""

from __future__ import annotations

import os
from math import radians

import bpy
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from . import artist, engine_link, native_splats, splats

USER_ERRORS = (ValueError, RuntimeError, OSError, ImportError)  # SplatFileError etc. are ValueErrors


def _splatfile():
    from ._shared import shared_module

    return shared_module("splatfile")


def read_extensions() -> tuple[str, ...]:
    """What `shared_protocol.splatfile` reads (".ply", ".splat", ... as its io module declares)."""
    from ._shared import shared_module

    return tuple(shared_module("splatfile.io").READ_EXTENSIONS)


def write_extensions() -> tuple[str, ...]:
    """What `shared_protocol.splatfile` writes (".ply", ".spz", ".sog", ".glb", ...)."""
    from ._shared import shared_module

    return tuple(shared_module("splatfile.io").WRITE_EXTENSIONS)


def _simple_extensions(extensions=None) -> list[str]:  # ".compressed.ply" is a ".ply" to a file browser
    exts = read_extensions() if extensions is None else extensions
    return list(dict.fromkeys("." + ext.rsplit(".", 1)[-1] for ext in exts))


def file_glob(extensions=None) -> str:
    return ";".join("*" + ext for ext in _simple_extensions(extensions))


def extensions_label() -> str:
    return ", ".join(read_extensions())


UP_AXES = [
    ("AUTO", "Auto", "Guess from the file: COLMAP captures (-Y up), else +Z (see the manual)"),
    ("Z", "+Z (as stored)", "Keep the file's axes"),
    ("-Y", "-Y (COLMAP / INRIA)", "Rotate so the file's -Y points up (+Z), as COLMAP scenes need"),
    ("Y", "+Y", "Rotate so the file's +Y points up (+Z)"),
]


class SPLATBRUSH_OT_import_gaussians(bpy.types.Operator, ImportHelper):
    """Import 3D Gaussian Splatting files (every format shared_protocol.splatfile reads) as splat objects"""

    bl_idname = "splatbrush.import_gaussians"
    bl_label = "Import Gaussian Splats"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    filter_glob: StringProperty(default=file_glob(), options={"HIDDEN"})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    up_axis: EnumProperty(name="Up axis", items=UP_AXES, default="AUTO")
    native: BoolProperty(
        name="Native splats (5.3+)",
        description="Blender 5.3+: a Gaussian splat point cloud drawn by Blender itself (EEVEE, Workbench) "
        "instead of the Geometry Nodes display; exported bit-exact too",
        default=False,
    )

    def execute(self, context):
        paths = [os.path.join(self.directory, f.name) for f in self.files if f.name] or [self.filepath]
        imported = []
        for path in paths:
            try:
                arrays = _splatfile().read_splats(path)
                name = os.path.basename(path.rstrip("/\\")).split(".")[0] or "splats"
                if self.native:
                    obj = native_splats.create_native_object(context, arrays, name, source=path)
                else:
                    obj = splats.create_splat_object(context, arrays, name, source=path)
            except USER_ERRORS as e:
                self.report({"ERROR"}, f"{e} (hint: Splatbrush reads {extensions_label()})")
                return {"CANCELLED"}
            up = artist.detect_up_axis(path, arrays.extra) if self.up_axis == "AUTO" else self.up_axis
            obj[splats.PROP] = {**obj[splats.PROP].to_dict(), "up_axis": up}
            if up == "-Y":  # x rotation by -90 degrees takes (0, -1, 0) to (0, 0, 1)
                obj.rotation_euler[0] = radians(-90)
            elif up == "Y":
                obj.rotation_euler[0] = radians(90)
            imported.append(obj)
        for obj in context.selected_objects:
            obj.select_set(False)
        for obj in imported:
            obj.select_set(True)
        context.view_layer.objects.active = imported[-1]
        n = sum(len(o.data.points if self.native else o.data.vertices) for o in imported)
        self.report({"INFO"}, f"imported {n:,} Gaussians into {', '.join(o.name for o in imported)}")
        return {"FINISHED"}


class SPLATBRUSH_OT_export_gaussians(bpy.types.Operator, ExportHelper):
    """Export the active splat object to a 3DGS file (format by extension: .ply and .glb bit-exact; .spz,
    .sog, .compressed.ply, .splat quantized, see docs/formats.md)"""

    bl_idname = "splatbrush.export_gaussians"
    bl_label = "Export Gaussian Splats"
    filename_ext = ".ply"
    filter_glob: StringProperty(default=file_glob(write_extensions()), options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return splats.is_splat_object(obj) or native_splats.is_native_splat_object(obj)

    def execute(self, context):
        obj = context.active_object
        try:
            if native_splats.is_native_splat_object(obj):
                arrays = native_splats.arrays_from_native_object(obj)
            else:
                arrays = splats.arrays_from_object(obj)
            _splatfile().write_splats(arrays, self.filepath)
        except USER_ERRORS as e:
            exts = ", ".join(write_extensions())
            self.report({"ERROR"}, f"{e} (hint: export a splat object to a path ending in {exts})")
            return {"CANCELLED"}
        self.report({"INFO"}, f"wrote {arrays.num_gaussians:,} Gaussians to {self.filepath}")
        return {"FINISHED"}


def stylize_targets(context) -> list:
    """The objects Stylize works on: every selected mesh (splats or a surface), the active one first."""
    active = context.active_object
    objs = [o for o in context.selected_objects if o.type == "MESH"]
    if active is not None and active.type == "MESH" and active not in objs:
        objs.insert(0, active)
    elif active in objs:
        objs.remove(active)
        objs.insert(0, active)
    return objs


def _style_exists(path: str) -> bool:
    return os.path.isfile(bpy.path.abspath(path))


class SPLATBRUSH_OT_stylize(bpy.types.Operator):
    """Stylize the selected splat or mesh objects with the style image (each result is a new object;
    several objects are queued one after the other)"""

    bl_idname = "splatbrush.stylize"
    bl_label = "Stylize"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        objs = stylize_targets(context)
        settings = context.scene.splatbrush
        obj = objs[0] if objs else context.active_object
        problem = artist.stylize_problem(
            obj, splats.is_splat_object(obj), engine_link.is_running(), settings.style_image, _style_exists
        )
        if problem:
            cls.poll_message_set(problem)
        return not problem

    def execute(self, context):
        from . import scene_data
        from .preferences import get_preferences

        settings = context.scene.splatbrush
        targets = stylize_targets(context)
        runs = []
        try:
            prefs = get_preferences(context)
            options = prefs.engine_options()
            style = scene_data.load_style_image(settings.style_image)
            for obj in targets:
                task, transform = scene_data.stylize_task(
                    context, obj, settings, options, style, prefs.device
                )
                run = engine_link.start(context, task, obj, transform_result=transform)
                runs.append(run)
        except USER_ERRORS as e:
            self.report({"ERROR"}, f"Stylize: {e}")
            return {"CANCELLED"}
        names = ", ".join(o.name for o in targets)
        if bpy.app.background:
            failed = [r for r in runs if r.task.status.state != "done"]
            if failed:
                status = failed[0].task.status
                self.report({"ERROR"}, f"Stylize {failed[0].source_name}: {status.state}: {status.message}")
                return {"CANCELLED"}
            self.report({"INFO"}, f"stylized {names} -> {', '.join(r.result_name for r in runs)}")
        else:
            self.report({"INFO"}, f"Stylize started for {names}" + (" (queued)" if len(runs) > 1 else ""))
        return {"FINISHED"}


class SPLATBRUSH_OT_cancel(bpy.types.Operator):
    """Cancel the running Stylize job"""

    bl_idname = "splatbrush.cancel"
    bl_label = "Cancel Stylize"

    @classmethod
    def poll(cls, context):
        return engine_link.is_running()

    def execute(self, context):
        n = engine_link.cancel_all()
        self.report({"INFO"}, f"cancelling {n} job(s)")
        return {"FINISHED"}


class SPLATBRUSH_OT_show_preview(bpy.types.Operator):
    """Show the live Stylize preview large, in an Image Editor (a new window; it updates in place)"""

    bl_idname = "splatbrush.show_preview"
    bl_label = "Open Preview"

    @classmethod
    def poll(cls, context):
        if bpy.data.images.get(engine_link.PREVIEW_IMAGE) is None:
            cls.poll_message_set("no preview yet: it appears once a Stylize job sends one")
            return False
        return not bpy.app.background

    def execute(self, context):
        image = bpy.data.images[engine_link.PREVIEW_IMAGE]
        for window in context.window_manager.windows:
            for area in window.screen.areas:
                if area.type == "IMAGE_EDITOR":
                    area.spaces.active.image = image
                    return {"FINISHED"}
        bpy.ops.wm.window_new()
        area = context.window_manager.windows[-1].screen.areas[0]
        area.type = "IMAGE_EDITOR"
        area.spaces.active.image = image
        return {"FINISHED"}


class SPLATBRUSH_OT_setup_view(bpy.types.Operator):
    """Show splats as the engine renders them from the scene camera: view transform Raw (the colours blend as
    in 3DGS; AgX and Filmic shift and wash them out), enough Cycles transparent bounces, SH colours and
    camera-facing footprints baked for the scene camera (press again after moving the camera)"""

    bl_idname = "splatbrush.setup_view"
    bl_label = "Splat View for Camera"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        from . import splats

        splats.setup_scene_for_splats(context.scene)
        self.report({"INFO"}, "view transform Raw (splats blend as 3DGS), bounces raised, colours baked")
        return {"FINISHED"}


class SPLATBRUSH_FH_gaussians(bpy.types.FileHandler):
    bl_idname = "SPLATBRUSH_FH_gaussians"
    bl_label = "Gaussian Splats"
    bl_import_operator = "splatbrush.import_gaussians"
    bl_file_extensions = ";".join(_simple_extensions())

    @classmethod
    def poll_drop(cls, context):
        return context.area is not None and context.area.type == "VIEW_3D"


def menu_import(self, context):
    label = ", ".join(_simple_extensions())
    self.layout.operator(SPLATBRUSH_OT_import_gaussians.bl_idname, text=f"Gaussian Splats ({label})")


def menu_export(self, context):
    label = ", ".join(_simple_extensions(write_extensions()))
    self.layout.operator(SPLATBRUSH_OT_export_gaussians.bl_idname, text=f"Gaussian Splats ({label})")


classes = (
    SPLATBRUSH_OT_import_gaussians,
    SPLATBRUSH_OT_export_gaussians,
    SPLATBRUSH_OT_stylize,
    SPLATBRUSH_OT_cancel,
    SPLATBRUSH_OT_show_preview,
    SPLATBRUSH_OT_setup_view,
    SPLATBRUSH_FH_gaussians,
)
