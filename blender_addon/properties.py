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

from ._shared import shared_module

PRESETS = [
    ("preview", "Preview", "A quick look: few, small steps (tens of seconds on a CPU)"),
    ("fast", "Fast", "Weight-free guidance: the painting's palette in soft blotches, a few minutes"),
    (
        "painterly",
        "Painterly",
        "The default: Magenta's learned style network paints every view (CPU)",
    ),
    ("paper", "Paper", "StyleMe3D's full schedule with the diffusion models (a GPU)"),
]
CAMERA_SOURCES = [
    ("AUTO", "Auto", "The scene's cameras if it has any, else orbit views around the object"),
    ("ORBIT", "Orbit", "Automatic views on rings around the object"),
    ("ALL", "All cameras", "Every camera in the scene"),
    ("SELECTED", "Selected cameras", "The selected camera objects"),
    ("COLLECTION", "Collection", "The cameras of a collection"),
]
RESTYLE = [
    ("ALL", "All", "Restyle every splat"),
    ("SELECTED", "Selected", "Only the splats selected in Edit Mode"),
    ("VERTEX_GROUP", "Vertex group", "Only the splats in a vertex group (its weights blend)"),
    ("ATTRIBUTE", "Attribute", "Only the splats where a FLOAT point attribute is > 0 (its value blends)"),
]


def path_options() -> set[str]:
    """{'PATH_SUPPORTS_BLEND_RELATIVE'} where this Blender has it (4.5+, not 4.2): '//' paths then."""
    has = "is_path_supports_blend_relative" in bpy.types.Property.bl_rna.properties
    return {"PATH_SUPPORTS_BLEND_RELATIVE"} if has else set()


class SplatbrushSettings(bpy.types.PropertyGroup):
    style_image: StringProperty(
        name="Style image",
        subtype="FILE_PATH",
        description="The painting to imitate ('//' paths are relative to the .blend file)",
        options=path_options(),
    )
    style_strength: FloatProperty(
        name="Strength",
        default=1.0,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
        description="How far the colours move towards the style: 0 keeps the original, 1 the full style",
    )
    restyle: EnumProperty(name="Restyle", items=RESTYLE, default="ALL", description="Which splats change")
    mask_vertex_group: StringProperty(
        name="Vertex group", description="Vertex group of the splats to restyle"
    )
    mask_attribute: StringProperty(
        name="Mask attribute", description="FLOAT point attribute: > 0 restyles (the value blends)"
    )
    mask_soft_edge: FloatProperty(
        name="Soft edge",
        default=0.0,
        min=0.0,
        soft_max=1.0,
        subtype="DISTANCE",
        description="Blend the style out over this distance around the chosen splats (0: a hard edge)",
    )
    preset: EnumProperty(name="Preset", items=PRESETS, default=shared_module("payloads").DEFAULT_PRESET)
    steps: IntProperty(name="Steps", default=0, min=0, max=100000, description="0: the preset's number")
    size: IntProperty(name="Size", default=0, min=0, max=4096, description="Render size (px); 0: preset's")
    seed: IntProperty(name="Seed", default=0, min=0)
    camera_source: EnumProperty(name="Views", items=CAMERA_SOURCES, default="AUTO")
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
    notes: StringProperty(name="Notes", default="", description="What the user should know about the run")
    source_object: StringProperty(name="Source object", default="")


classes = (SplatbrushSettings, SplatbrushState)


def register_properties() -> None:
    bpy.types.Scene.splatbrush = PointerProperty(type=SplatbrushSettings)
    bpy.types.WindowManager.splatbrush = PointerProperty(type=SplatbrushState)


def unregister_properties() -> None:
    for owner in (bpy.types.Scene, bpy.types.WindowManager):
        if hasattr(owner, "splatbrush"):
            del owner.splatbrush
