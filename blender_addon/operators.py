"""Operators: import / export 3DGS files (File menu and drag-and-drop), Stylize, Cancel.

Errors are caught here and shown with `self.report` plus a hint; the heavy lifting lives in bpy-free modules.
"""

from __future__ import annotations

import os
from math import radians

import bpy
from bpy.props import CollectionProperty, EnumProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from . import engine_link, splats

FILE_GLOB = "*.ply;*.splat"
USER_ERRORS = (ValueError, RuntimeError, OSError, ImportError)  # SplatFileError etc. are ValueErrors


def _splatfile():
    from ._shared import shared_module

    return shared_module("splatfile")


class SPLATBRUSH_OT_import_gaussians(bpy.types.Operator, ImportHelper):
    """Import 3D Gaussian Splatting files (.ply, .compressed.ply, .splat) as splat objects"""

    bl_idname = "splatbrush.import_gaussians"
    bl_label = "Import Gaussian Splats"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    filter_glob: StringProperty(default=FILE_GLOB, options={"HIDDEN"})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    up_axis: EnumProperty(
        name="Up axis",
        items=[
            ("Z", "+Z (as stored)", "Keep the file's axes"),
            ("-Y", "-Y (COLMAP / INRIA)", "Rotate so the file's -Y points up (+Z), as COLMAP scenes need"),
            ("Y", "+Y", "Rotate so the file's +Y points up (+Z)"),
        ],
        default="Z",
    )

    def execute(self, context):
        paths = [os.path.join(self.directory, f.name) for f in self.files if f.name] or [self.filepath]
        imported = []
        for path in paths:
            try:
                arrays = _splatfile().read_splats(path)
                name = os.path.basename(path).split(".")[0] or "splats"
                obj = splats.create_splat_object(context, arrays, name, source=path)
            except USER_ERRORS as e:
                self.report({"ERROR"}, f"{e} (hint: Splatbrush reads INRIA .ply, .compressed.ply and .splat)")
                return {"CANCELLED"}
            if self.up_axis == "-Y":
                obj.rotation_euler[0] = radians(-90)
            elif self.up_axis == "Y":
                obj.rotation_euler[0] = radians(90)
            imported.append(obj)
        for obj in context.selected_objects:
            obj.select_set(False)
        for obj in imported:
            obj.select_set(True)
        context.view_layer.objects.active = imported[-1]
        n = sum(len(o.data.vertices) for o in imported)
        self.report({"INFO"}, f"imported {n:,} Gaussians into {', '.join(o.name for o in imported)}")
        return {"FINISHED"}


class SPLATBRUSH_OT_export_gaussians(bpy.types.Operator, ExportHelper):
    """Export the active splat object to a 3DGS file (.ply bit-exact, or .splat)"""

    bl_idname = "splatbrush.export_gaussians"
    bl_label = "Export Gaussian Splats"
    filename_ext = ".ply"
    filter_glob: StringProperty(default=FILE_GLOB, options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return splats.is_splat_object(context.active_object)

    def execute(self, context):
        obj = context.active_object
        try:
            arrays = splats.arrays_from_object(obj)
            _splatfile().write_splats(arrays, self.filepath)
        except USER_ERRORS as e:
            self.report({"ERROR"}, f"{e} (hint: export a splat object to a path ending in .ply or .splat)")
            return {"CANCELLED"}
        self.report({"INFO"}, f"wrote {arrays.num_gaussians:,} Gaussians to {self.filepath}")
        return {"FINISHED"}


class SPLATBRUSH_OT_stylize(bpy.types.Operator):
    """Stylize the active splat or mesh object with the style image (the result is a new object)"""

    bl_idname = "splatbrush.stylize"
    bl_label = "Stylize"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and obj.type == "MESH" and not engine_link.is_running()

    def execute(self, context):
        from . import scene_data
        from .jobs import StylizeTask
        from .mesh_sampling import SamplingConfig, sample_surface
        from .preferences import get_preferences

        settings = context.scene.splatbrush
        obj = context.active_object
        try:
            prefs = get_preferences(context)
            if splats.is_splat_object(obj):
                gaussians = splats.arrays_from_object(obj)
            else:
                source = scene_data.surface_source(obj, context.evaluated_depsgraph_get())
                gaussians = sample_surface(
                    source, SamplingConfig(count=settings.mesh_samples, seed=settings.seed)
                )
            style = scene_data.load_style_image(settings.style_image)
            size = settings.size or {"preview": 112, "fast": 160, "paper": 512}.get(settings.preset, 256)
            views = scene_data.camera_views(context, settings, obj, size)
            job_settings = {
                "preset": settings.preset,
                "steps": settings.steps or None,
                "size": settings.size or None,
                "views": len(views),
                "seed": settings.seed,
                "device": prefs.device,
            }
            task = StylizeTask(prefs.engine_options(), gaussians, style, views, job_settings)
            run = engine_link.start(context, task, obj)
        except USER_ERRORS as e:
            self.report({"ERROR"}, f"Stylize: {e}")
            return {"CANCELLED"}
        if bpy.app.background:
            status = run.task.status
            if status.state != "done":
                self.report({"ERROR"}, f"Stylize {status.state}: {status.message}")
                return {"CANCELLED"}
            self.report({"INFO"}, f"stylized {obj.name} -> {run.result_name}")
        else:
            self.report({"INFO"}, f"Stylize started for {obj.name} ({gaussians.num_gaussians:,} Gaussians)")
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


class SPLATBRUSH_FH_gaussians(bpy.types.FileHandler):
    bl_idname = "SPLATBRUSH_FH_gaussians"
    bl_label = "Gaussian Splats"
    bl_import_operator = "splatbrush.import_gaussians"
    bl_file_extensions = ".ply;.splat"

    @classmethod
    def poll_drop(cls, context):
        return context.area is not None and context.area.type == "VIEW_3D"


def menu_import(self, context):
    self.layout.operator(SPLATBRUSH_OT_import_gaussians.bl_idname, text="Gaussian Splats (.ply, .splat)")


def menu_export(self, context):
    self.layout.operator(SPLATBRUSH_OT_export_gaussians.bl_idname, text="Gaussian Splats (.ply, .splat)")


classes = (
    SPLATBRUSH_OT_import_gaussians,
    SPLATBRUSH_OT_export_gaussians,
    SPLATBRUSH_OT_stylize,
    SPLATBRUSH_OT_cancel,
    SPLATBRUSH_FH_gaussians,
)
