"""Reading what Stylize needs out of Blender into numpy: the style image, the views, a mesh's surface."""

from __future__ import annotations

import os

import bpy
import numpy as np

from . import views as V
from .artist import soft_edge
from .attributes import srgb_to_linear
from .mesh_sampling import SurfaceSource


def image_pixels(image) -> np.ndarray:  # [H, W, C] float32, row 0 = bottom (Blender's order)
    w, h = image.size
    if w == 0 or h == 0:
        raise ValueError(f"image {image.name!r} has no pixels (missing file {image.filepath!r}?)")
    buf = np.empty(w * h * image.channels, dtype=np.float32)
    image.pixels.foreach_get(buf)
    return buf.reshape(h, w, image.channels)


def load_style_image(path: str) -> np.ndarray:
    """The style image as uint8 [H, W, 3], top row first, in its stored (sRGB) values."""
    abspath = bpy.path.abspath(path)
    if not path or not os.path.isfile(abspath):
        raise ValueError(f"style image {path!r} not found: pick an image file in the Splatbrush panel")
    image = bpy.data.images.load(abspath, check_existing=False)
    try:
        try:
            image.colorspace_settings.name = "Non-Color"  # the stored values, not linearised ones
        except TypeError:
            pass
        px = image_pixels(image)
    except RuntimeError as e:
        raise ValueError(f"could not read the style image {abspath}: {e}") from e
    finally:
        bpy.data.images.remove(image)
    rgb = px[::-1, :, :3] if px.shape[2] >= 3 else np.repeat(px[::-1, :, :1], 3, axis=2)
    return np.ascontiguousarray(np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8))


# ------------------------------------------------------------------------------------------------ views
def blender_camera(scene, cam_obj):
    """A scene camera as the one `shared_protocol.cameras.BlenderCamera`."""
    from ._shared import shared_module

    cam, render = cam_obj.data, scene.render
    if cam.type != "PERSP":
        raise ValueError(f"camera {cam_obj.name!r} is {cam.type}; only perspective cameras can be used")
    return shared_module("cameras").BlenderCamera(
        matrix_world=np.array(cam_obj.matrix_world),
        lens_mm=cam.lens,
        sensor_width=cam.sensor_width,
        sensor_height=cam.sensor_height,
        sensor_fit=cam.sensor_fit,
        resolution_x=render.resolution_x,
        resolution_y=render.resolution_y,
        resolution_percentage=render.resolution_percentage,
        shift_x=cam.shift_x,
        shift_y=cam.shift_y,
        pixel_aspect_x=render.pixel_aspect_x,
        pixel_aspect_y=render.pixel_aspect_y,
        name=cam_obj.name,
    )


def world_bounds(obj, depsgraph=None) -> tuple[np.ndarray, np.ndarray]:
    """World-space bounding box of the object's points (splat means or mesh vertices)."""
    mesh = obj.data
    n = len(mesh.vertices)
    if n == 0:
        raise ValueError(f"{obj.name!r} has no vertices")
    co = np.empty(n * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    m = np.array(obj.matrix_world)
    pts = co.reshape(n, 3)
    if n > 1000:  # robust to a few stray splats
        lo, hi = np.percentile(pts, [1, 99], axis=0)
    else:
        lo, hi = pts.min(0), pts.max(0)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    world = corners @ m[:3, :3].T + m[:3, 3]
    return world.min(0), world.max(0)


def camera_views(context, settings, obj, size: int) -> list[dict]:
    """The views for the engine, in the object's local space, longer side `size` px."""
    scene = context.scene
    source = settings.camera_source
    scene_cams = [o for o in scene.objects if o.type == "CAMERA" and o.data.type == "PERSP"]
    if source == "AUTO":
        source = "ALL" if scene_cams else "ORBIT"
    if source == "ORBIT":
        lo, hi = world_bounds(obj)
        views = V.orbit_views(lo, hi, settings.orbit_views, size)
    else:
        if source == "ALL":
            cams = scene_cams
        elif source == "SELECTED":
            cams = [o for o in context.selected_objects if o.type == "CAMERA"]
        else:
            coll = settings.camera_collection
            if coll is None:
                raise ValueError("pick a camera collection, or choose other views")
            cams = [o for o in coll.all_objects if o.type == "CAMERA"]
        if not cams:
            raise ValueError(f"no cameras found for views = {source}; add some or use Auto / Orbit")
        cams.sort(key=lambda o: o.name)
        views = [V.fit_size(blender_camera(scene, c).to_opencv(), size) for c in cams]
    matrix = np.array(obj.matrix_world)
    return [V.to_object_space(v, matrix) for v in views]


# ------------------------------------------------------------------------------------------------ meshes
def _material_colour_and_texture(material):
    """(linear RGB base colour, image texture [H, W, 3] linear or None) of a material."""
    if material is None:
        return np.array([0.8, 0.8, 0.8]), None
    colour = np.array(material.diffuse_color[:3], dtype=np.float64)
    uses_nodes = bpy.app.version >= (5, 0, 0) or material.use_nodes  # 5.0+: always (use_nodes deprecated)
    tree = material.node_tree if uses_nodes else None
    if tree is None:
        return colour, None
    bsdf = next((n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        return colour, None
    base = bsdf.inputs["Base Color"]
    colour = np.array(base.default_value[:3], dtype=np.float64)
    if base.is_linked and base.links[0].from_node.type == "TEX_IMAGE":
        image = base.links[0].from_node.image
        if image is not None and image.size[0] > 0:
            px = image_pixels(image)[:, :, :3].astype(np.float64)
            if not image.is_float and image.colorspace_settings.name == "sRGB":
                px = srgb_to_linear(px)
            return colour, px
    return colour, None


def surface_source(obj, depsgraph) -> SurfaceSource:
    """The evaluated mesh of `obj` (modifiers applied) as arrays for `mesh_sampling.sample_surface`."""
    obj_eval = obj.evaluated_get(depsgraph)
    mesh = obj_eval.to_mesh()
    try:
        mesh.calc_loop_triangles()
        nv, nt, nl = len(mesh.vertices), len(mesh.loop_triangles), len(mesh.loops)
        verts = np.empty(nv * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", verts)
        tris = np.empty(nt * 3, dtype=np.int32)
        mesh.loop_triangles.foreach_get("vertices", tris)
        loops = np.empty(nt * 3, dtype=np.int32)
        mesh.loop_triangles.foreach_get("loops", loops)
        mat_index = np.empty(nt, dtype=np.int32)
        mesh.loop_triangles.foreach_get("material_index", mat_index)
        loops = loops.reshape(nt, 3)

        materials = [slot.material for slot in obj.material_slots] or [None]
        colours, textures, tex_of_material = [], [], []
        for material in materials:
            colour, texture = _material_colour_and_texture(material)
            colours.append(colour)
            tex_of_material.append(len(textures) if texture is not None else -1)
            if texture is not None:
                textures.append(texture)
        mat_index = np.clip(mat_index, 0, len(materials) - 1)
        source = SurfaceSource(
            vertices=verts.reshape(nv, 3),
            triangles=tris.reshape(nt, 3),
            triangle_colours=np.array(colours)[mat_index],
        )
        if textures and mesh.uv_layers.active is not None:
            uv = np.empty(nl * 2, dtype=np.float32)
            mesh.uv_layers.active.uv.foreach_get("vector", uv)
            source.corner_uvs = uv.reshape(nl, 2)[loops]
            source.textures = textures
            source.triangle_texture = np.array(tex_of_material)[mat_index]
        attr = getattr(mesh.color_attributes, "active_color", None)
        if attr is not None and not textures:
            n = len(attr.data)
            buf = np.empty(n * 4, dtype=np.float32)
            attr.data.foreach_get("color", buf)
            col = buf.reshape(n, 4)[:, :3]
            if attr.domain == "CORNER":
                source.corner_colours = col[loops]
            elif attr.domain == "POINT":
                source.corner_colours = col[tris.reshape(nt, 3)]
        return source
    finally:
        obj_eval.to_mesh_clear()


# ------------------------------------------------------------------------------------------ a Stylize run
def splat_weights(obj, settings) -> np.ndarray | None:
    """Per-splat restyle weights [N] float32 in 0..1 from the Restyle setting (None: every splat)."""
    mode, mesh = settings.restyle, obj.data
    n = len(mesh.vertices)
    if mode == "ALL":
        return None
    if mode == "SELECTED":
        if obj.mode == "EDIT":
            obj.update_from_editmode()
        sel = np.zeros(n, dtype=bool)
        mesh.vertices.foreach_get("select", sel)
        if not sel.any():
            raise ValueError(
                f"no splats of {obj.name!r} are selected: select some in Edit Mode, or Restyle All"
            )
        weights = sel.astype(np.float32)
    elif mode == "VERTEX_GROUP":
        group = obj.vertex_groups.get(settings.mask_vertex_group)
        if group is None:
            names = ", ".join(g.name for g in obj.vertex_groups) or "none"
            raise ValueError(
                f"{obj.name!r} has no vertex group {settings.mask_vertex_group!r} (it has: {names})"
            )
        weights = np.zeros(n, dtype=np.float32)
        gi = group.index
        for v in mesh.vertices:  # no foreach access to group weights in bpy
            for g in v.groups:
                if g.group == gi:
                    weights[v.index] = g.weight
    else:
        attr = mesh.attributes.get(settings.mask_attribute)
        if attr is None or attr.domain != "POINT" or attr.data_type != "FLOAT":
            raise ValueError(
                f"{obj.name!r} has no FLOAT point attribute {settings.mask_attribute!r} to use as a mask"
            )
        weights = np.empty(n, dtype=np.float32)
        attr.data.foreach_get("value", weights)
        weights = np.clip(np.nan_to_num(weights), 0.0, 1.0)
    if settings.mask_soft_edge > 0:
        co = np.empty(n * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
        scale = float(np.linalg.norm(np.array(obj.matrix_world)[:3, 0])) or 1.0
        weights = soft_edge(co.reshape(n, 3), weights, settings.mask_soft_edge / scale)
    return weights


def stylize_task(context, obj, settings, options, style: np.ndarray, device: str):
    """(StylizeTask, transform of the result or None) for one object: its Gaussians (or a mesh's surface
    samples), views, settings, and the partial-stylization blend."""
    from . import artist, splats
    from .jobs import StylizeTask
    from .mesh_sampling import SamplingConfig, sample_surface

    weights = None
    if splats.is_splat_object(obj):
        gaussians = splats.arrays_from_object(obj)
        weights = splat_weights(obj, settings)
    else:
        if settings.restyle != "ALL":
            print(
                f"Splatbrush: {obj.name!r} is a mesh: Restyle {settings.restyle} is for splats; all restyled"
            )
        source = surface_source(obj, context.evaluated_depsgraph_get())
        gaussians = sample_surface(source, SamplingConfig(count=settings.mesh_samples, seed=settings.seed))
    views = camera_views(context, settings, obj, artist.working_size(settings))
    strength_on_engine = artist.engine_supports("style_strength")
    mask_on_engine = weights is not None and artist.engine_supports("mask")
    job = artist.job_settings(settings, device, len(views), strength_on_engine)
    submitted = artist.with_mask(gaussians, weights) if mask_on_engine else gaussians
    task = StylizeTask(options, submitted, style, views, job)
    strength = float(settings.style_strength)
    if weights is None and (strength_on_engine or strength >= 1.0):
        return task, None

    def transform(result):
        return artist.blend_result(gaussians, result, weights, strength, strength_on_engine)

    return task, transform
