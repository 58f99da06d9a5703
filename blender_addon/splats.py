"""Gaussians as Blender objects: a vertex-only mesh whose point attributes hold every Gaussian parameter
(see `attributes.py`), displayed through a Geometry Nodes group and a material.

Everything moves through numpy buffers with `foreach_set` / `foreach_get`; there is no per-splat loop.
The display (each splat drawn as its Gaussian; "Points" for huge scenes) lives in `display.py`.
"""

from __future__ import annotations

import bpy
import numpy as np

from . import attributes as A
from .display import (  # noqa: F401  (the display's names, as they were when they lived here)
    MATERIAL,
    MODIFIER,
    NODE_GROUP,
    bake_for_camera,
    display_material,
    display_node_group,
    ensure_display,
    setup_scene_for_splats,
)

PROP = "splatbrush"  # object custom property: {"extras": [...], "source": "...", "sh_degree": k}
POINTS_DISPLAY_ABOVE = 500_000  # scenes larger than this start with the light point display


def is_splat_object(obj) -> bool:
    if obj is None or obj.type != "MESH":
        return False
    names = obj.data.attributes.keys()
    return all(n in names for n in ("f_dc_0", "opacity", "scale_0", "rot_0"))


# ------------------------------------------------------------------------------------------- numpy <-> mesh
def write_display_attributes(mesh, arrays, view=None) -> None:
    """The derived sb_* attributes (see `attributes.display_attributes`; `view`: a camera to bake toward)."""
    for name, values in A.display_attributes(arrays, view).items():
        A.set_point_attribute(mesh, name, A.DISPLAY_TYPES[name], values)


def mesh_from_arrays(arrays, name: str):
    """A new vertex-only mesh holding `arrays` bit-exactly, plus the display attributes."""
    arrays.check()
    means, attrs = A.pack(arrays)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(arrays.num_gaussians)
    mesh.vertices.foreach_set("co", means.ravel())
    for attr_name, values in attrs.items():
        A.set_point_attribute(mesh, attr_name, "FLOAT", values)
    write_display_attributes(mesh, arrays)
    mesh.update()
    return mesh


def arrays_from_mesh(mesh, extra_order: list[str] | None = None):
    """The Gaussians stored on a splat mesh, bit-exact (object-local coordinates)."""
    n = len(mesh.vertices)
    if n == 0:
        raise ValueError(f"mesh {mesh.name!r} has no points")
    positions = np.empty(n * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", positions)
    wanted = set(A.gaussian_attribute_names(3))
    values: dict[str, np.ndarray] = {}
    for attr in mesh.attributes:
        if attr.domain != "POINT" or attr.data_type != "FLOAT":
            continue
        if attr.name in wanted or attr.name.startswith(("f_rest_", A.EXTRA_PREFIX)):
            buf = np.empty(n, dtype=np.float32)
            attr.data.foreach_get("value", buf)
            values[attr.name] = buf
    return A.unpack(positions.reshape(n, 3), values, extra_order)


def arrays_from_object(obj):
    if not is_splat_object(obj):
        raise ValueError(
            f"{obj.name!r} is not a Splatbrush splat object "
            "(it lacks the f_dc_0/opacity/scale_0/rot_0 point attributes)"
        )
    meta = obj.get(PROP, {})
    extras = list(meta.get("extras", [])) if hasattr(meta, "get") else []
    return arrays_from_mesh(obj.data, extras)


def create_splat_object(context, arrays, name: str, source: str = "", matrix_world=None, collection=None):
    """Link a new splat object holding `arrays` into `collection` (default: the active collection)."""
    mesh = mesh_from_arrays(arrays, name)
    obj = bpy.data.objects.new(name, mesh)
    obj[PROP] = {"extras": list(arrays.extra), "source": source, "sh_degree": arrays.sh_degree}
    if matrix_world is not None:
        obj.matrix_world = matrix_world
    (collection or context.collection).objects.link(obj)
    ensure_display(obj, points=arrays.num_gaussians > POINTS_DISPLAY_ABOVE)
    return obj


def update_colours(obj, arrays) -> None:
    """Rewrite the SH attributes (and display colours) of a splat object in place."""
    mesh = obj.data
    if arrays.num_gaussians != len(mesh.vertices):
        raise ValueError(f"{arrays.num_gaussians} Gaussians for an object of {len(mesh.vertices)} points")
    _, attrs = A.pack(arrays)
    for attr_name, values in attrs.items():
        if attr_name.startswith("f_"):
            A.set_point_attribute(mesh, attr_name, "FLOAT", values)
    write_display_attributes(mesh, arrays)
    mesh.update()
    cam = bpy.data.objects.get(obj.get("splatbrush_display_camera", "") or "")
    if cam is not None and cam.type == "CAMERA" and cam.data.type == "PERSP":
        bake_for_camera(obj, arrays, bpy.context.scene, cam)  # keep showing it toward the baked camera
