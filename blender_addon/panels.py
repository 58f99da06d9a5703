"""The Splatbrush tab in the 3D view's sidebar (N panel)."""

from __future__ import annotations

import bpy

from . import compat, engine_link, splats


class SPLATBRUSH_PT_main(bpy.types.Panel):
    bl_idname = "SPLATBRUSH_PT_main"
    bl_label = "Splatbrush"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Splatbrush"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.splatbrush
        state = context.window_manager.splatbrush
        obj = context.active_object

        row = layout.row(align=True)
        row.operator("splatbrush.import_gaussians", text="Import", icon="IMPORT")
        row.operator("splatbrush.export_gaussians", text="Export", icon="EXPORT")

        box = layout.box()
        if obj is None or obj.type != "MESH":
            box.label(text="Select a splat or mesh object", icon="INFO")
        elif splats.is_splat_object(obj):
            box.label(text=f"{obj.name}: {len(obj.data.vertices):,} Gaussians", icon="POINTCLOUD_DATA")
            mod = obj.modifiers.get(splats.MODIFIER)
            if mod is not None and mod.node_group is not None:
                for item in mod.node_group.interface.items_tree:
                    if getattr(item, "in_out", "") == "INPUT" and item.name in ("Size", "Points"):
                        compat.draw_modifier_input(box, mod, item.identifier, item.name)
        else:
            box.label(text=f"{obj.name}: mesh, sampled on its surface", icon="MESH_DATA")
            box.prop(settings, "mesh_samples")

        if context.scene.view_settings.view_transform not in ("Standard", "Raw"):  # Raw: splats as 3DGS
            row = layout.row()
            row.label(
                text=f"View: {context.scene.view_settings.view_transform} shifts splat colours", icon="ERROR"
            )
            row.operator("splatbrush.setup_view", text="Splat View")

        col = layout.column()
        col.prop(settings, "style_image")
        col.prop(settings, "style_strength", slider=True)
        col.prop(settings, "preset")
        row = col.row(align=True)
        row.prop(settings, "steps")
        row.prop(settings, "size")
        col.prop(settings, "camera_source")
        if settings.camera_source == "ORBIT":
            col.prop(settings, "orbit_views")
        elif settings.camera_source == "COLLECTION":
            col.prop(settings, "camera_collection")
        col.prop(settings, "seed")
        if obj is not None and splats.is_splat_object(obj):
            col.prop(settings, "restyle")
            if settings.restyle == "VERTEX_GROUP":
                col.prop_search(settings, "mask_vertex_group", obj, "vertex_groups")
            elif settings.restyle == "ATTRIBUTE":
                col.prop_search(settings, "mask_attribute", obj.data, "attributes")
            if settings.restyle != "ALL":
                col.prop(settings, "mask_soft_edge")

        if engine_link.is_running():
            if hasattr(layout, "progress"):
                layout.progress(factor=state.progress, type="BAR", text=state.status)
            else:
                layout.prop(state, "progress", text=state.status, slider=True)
            layout.operator("splatbrush.cancel", icon="CANCEL")
        else:
            layout.operator("splatbrush.stylize", icon="BRUSH_DATA")
            if state.status:
                layout.label(text=state.status)
        if state.notes:
            for note in state.notes.split(" | "):
                layout.label(text=note, icon="INFO")
        image = bpy.data.images.get(engine_link.PREVIEW_IMAGE)
        if image is not None:
            if image.preview is not None:
                layout.template_icon(icon_value=image.preview.icon_id, scale=12.0)
            layout.operator("splatbrush.show_preview", icon="IMAGE_DATA")


classes = (SPLATBRUSH_PT_main,)
