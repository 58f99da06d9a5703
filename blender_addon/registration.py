"""Registration of every class, property, menu entry and handler; unregister removes all of them."""

from __future__ import annotations

import bpy
from bpy.app.handlers import persistent

from . import engine_link, operators, panels, preferences, properties

classes = (
    *preferences.classes,
    *properties.classes,
    *operators.classes,
    *panels.classes,
)


@persistent
def cancel_on_load(*_args) -> None:
    """A new .blend is being loaded: the objects our jobs refer to go away, so stop the jobs."""
    engine_link.cancel_all()


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    properties.register_properties()
    bpy.types.TOPBAR_MT_file_import.append(operators.menu_import)
    bpy.types.TOPBAR_MT_file_export.append(operators.menu_export)
    bpy.types.STATUSBAR_HT_header.append(engine_link.draw_status_bar)
    bpy.app.handlers.load_pre.append(cancel_on_load)
    preferences.restore_on_register()


def unregister() -> None:
    preferences.save_on_unregister()
    engine_link.shutdown()
    if cancel_on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(cancel_on_load)
    bpy.types.STATUSBAR_HT_header.remove(engine_link.draw_status_bar)
    bpy.types.TOPBAR_MT_file_export.remove(operators.menu_export)
    bpy.types.TOPBAR_MT_file_import.remove(operators.menu_import)
    properties.unregister_properties()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
