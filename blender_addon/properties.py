"""Per-scene Stylize settings (saved with the file) and the run state (window manager, not saved)."""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

PRESETS = [
    ("preview", "Preview", "A quick look: few, small steps (tens of seconds on a CPU)"),
    ("fast", "Fast", "The CPU default: weight-free guidance, a few minutes"),
    ("paper", "Paper", "StyleMe3D's full schedule with the diffusion models (a GPU)"),
]
CAMERA_SOURCES = [
    ("ORBIT", "Orbit", "Automatic views on rings around the object"),
    ("ALL", "All cameras", "Every camera in the scene"),
    ("SELECTED", "Selected cameras", "The selected camera objects"),
    ("COLLECTION", "Collection", "The cameras of a collection"),
]


class SplatbrushSettings(bpy.types.PropertyGroup):
    style_image: StringProperty(
        name="Style image", subtype="FILE_PATH", description="The painting to imitate"
    )
    preset: EnumProperty(name="Preset", items=PRESETS, default="fast")
    steps: IntProperty(name="Steps", default=0, min=0, max=100000, description="0: the preset's number")
    size: IntProperty(name="Size", default=0, min=0, max=4096, description="Render size (px); 0: preset's")
    seed: IntProperty(name="Seed", default=0, min=0)
    camera_source: EnumProperty(name="Views", items=CAMERA_SOURCES, default="ORBIT")
    orbit_views: IntProperty(name="Orbit views", default=12, min=1, max=256)
    camera_collection: PointerProperty(name="Camera collection", type=bpy.types.Collection)
    mesh_samples: IntProperty(
        name="Gaussians per mesh",
        default=100_000,
        min=100,
        max=10_000_000,
        description="How many Gaussians to sample on a mesh's surface",
    )


class SplatbrushState(bpy.types.PropertyGroup):
    running: BoolProperty(name="Running", default=False)
    progress: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    status: StringProperty(name="Status", default="")
    source_object: StringProperty(name="Source object", default="")


classes = (SplatbrushSettings, SplatbrushState)


def register_properties() -> None:
    bpy.types.Scene.splatbrush = PointerProperty(type=SplatbrushSettings)
    bpy.types.WindowManager.splatbrush = PointerProperty(type=SplatbrushState)


def unregister_properties() -> None:
    for owner in (bpy.types.Scene, bpy.types.WindowManager):
        if hasattr(owner, "splatbrush"):
            del owner.splatbrush
