"""Gaussians as Blender objects: a vertex-only mesh whose point attributes hold every Gaussian parameter
(see `attributes.py`), displayed through a Geometry Nodes group and a material.

Everything moves through numpy buffers with `foreach_set` / `foreach_get`; there is no per-splat loop.
The display: each point is instanced as an ico-sphere scaled by exp(log_scale) x Size and rotated by the
Gaussian's quaternion (oriented ellipsoids), coloured by the SH DC colour with alpha = opacity through an
emission + transparency material. "Points" switches to a light display for huge scenes: one point per splat
with radius from its mean scale.
"""

from __future__ import annotations

import bpy
import numpy as np

from . import attributes as A

NODE_GROUP = "Splatbrush Display"
MATERIAL = "Splatbrush Splat"
MODIFIER = "Splatbrush Display"
PROP = "splatbrush"  # object custom property: {"extras": [...], "source": "...", "sh_degree": k}
POINTS_DISPLAY_ABOVE = 500_000  # scenes larger than this start with the light point display


def is_splat_object(obj) -> bool:
    if obj is None or obj.type != "MESH":
        return False
    names = obj.data.attributes.keys()
    return all(n in names for n in ("f_dc_0", "opacity", "scale_0", "rot_0"))


# ------------------------------------------------------------------------------------------- numpy <-> mesh
def _set_attribute(mesh, name: str, values: np.ndarray, data_type: str) -> None:
    attr = mesh.attributes.get(name)
    if attr is not None and (attr.data_type != data_type or attr.domain != "POINT"):
        mesh.attributes.remove(attr)
        attr = None
    if attr is None:
        attr = mesh.attributes.new(name, data_type, "POINT")
    key = "value" if data_type == "FLOAT" else "vector"
    attr.data.foreach_set(key, np.ascontiguousarray(values, dtype=np.float32).ravel())


def write_display_attributes(mesh, arrays) -> None:
    for name, values in A.display_attributes(arrays).items():
        _set_attribute(mesh, name, values, A.DISPLAY_TYPES[name])


def mesh_from_arrays(arrays, name: str):
    """A new vertex-only mesh holding `arrays` bit-exactly, plus the display attributes."""
    arrays.check()
    means, attrs = A.pack(arrays)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(arrays.num_gaussians)
    mesh.vertices.foreach_set("co", means.ravel())
    for attr_name, values in attrs.items():
        _set_attribute(mesh, attr_name, values, "FLOAT")
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
            _set_attribute(mesh, attr_name, values, "FLOAT")
    write_display_attributes(mesh, arrays)
    mesh.update()


# ------------------------------------------------------------------------------------------- display
def _socket(node, name: str, outputs: bool = False):
    sockets = node.outputs if outputs else node.inputs
    for s in sockets:
        if s.name == name and s.enabled:
            return s
    return sockets[name]


def _named_attribute(nodes, name: str, data_type: str):
    node = nodes.new("GeometryNodeInputNamedAttribute")
    node.data_type = data_type
    node.inputs["Name"].default_value = name
    return node


def display_node_group():
    group = bpy.data.node_groups.get(NODE_GROUP)
    if group is not None:
        return group
    group = bpy.data.node_groups.new(NODE_GROUP, "GeometryNodeTree")
    iface = group.interface
    iface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    size = iface.new_socket("Size", in_out="INPUT", socket_type="NodeSocketFloat")
    size.default_value, size.min_value, size.max_value = 1.5, 0.0, 10.0
    size.description = "Ellipsoid radius in standard deviations"
    points = iface.new_socket("Points", in_out="INPUT", socket_type="NodeSocketBool")
    points.description = "Light display for huge scenes: one point per splat"
    iface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")

    nodes, links = group.nodes, group.links
    gin, gout = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")
    material = display_material()

    # ellipsoids: an ico-sphere per point, rotated and scaled per splat
    ico = nodes.new("GeometryNodeMeshIcoSphere")
    ico.inputs["Radius"].default_value = 1.0
    ico.inputs["Subdivisions"].default_value = 1
    inst = nodes.new("GeometryNodeInstanceOnPoints")
    rot = _named_attribute(nodes, "sb_rotation", "FLOAT_VECTOR")
    scale = _named_attribute(nodes, "sb_scale", "FLOAT_VECTOR")
    mul = nodes.new("ShaderNodeVectorMath")
    mul.operation = "SCALE"
    links.new(_socket(scale, "Attribute", True), mul.inputs[0])
    links.new(_socket(gin, "Size", True), _socket(mul, "Scale"))
    links.new(_socket(gin, "Geometry", True), _socket(inst, "Points"))
    links.new(_socket(ico, "Mesh", True), _socket(inst, "Instance"))
    links.new(_socket(rot, "Attribute", True), _socket(inst, "Rotation"))
    links.new(_socket(mul, "Vector", True), _socket(inst, "Scale"))
    set_mat_inst = nodes.new("GeometryNodeSetMaterial")
    set_mat_inst.inputs["Material"].default_value = material
    links.new(_socket(inst, "Instances", True), _socket(set_mat_inst, "Geometry"))

    # points: one point per splat, radius = mean scale x Size
    to_points = nodes.new("GeometryNodeMeshToPoints")
    mean = nodes.new("ShaderNodeVectorMath")
    mean.operation = "DOT_PRODUCT"
    mean.inputs[1].default_value = (1 / 3, 1 / 3, 1 / 3)
    links.new(_socket(scale, "Attribute", True), mean.inputs[0])
    radius = nodes.new("ShaderNodeMath")
    radius.operation = "MULTIPLY"
    links.new(_socket(mean, "Value", True), radius.inputs[0])
    links.new(_socket(gin, "Size", True), radius.inputs[1])
    links.new(_socket(gin, "Geometry", True), _socket(to_points, "Mesh"))
    links.new(_socket(radius, "Value", True), _socket(to_points, "Radius"))
    set_mat_pts = nodes.new("GeometryNodeSetMaterial")
    set_mat_pts.inputs["Material"].default_value = material
    links.new(_socket(to_points, "Points", True), _socket(set_mat_pts, "Geometry"))

    switch = nodes.new("GeometryNodeSwitch")
    switch.input_type = "GEOMETRY"
    links.new(_socket(gin, "Points", True), switch.inputs[0])
    links.new(_socket(set_mat_inst, "Geometry", True), switch.inputs[1])  # False
    links.new(_socket(set_mat_pts, "Geometry", True), switch.inputs[2])  # True
    links.new(switch.outputs[0], _socket(gout, "Geometry"))
    for i, node in enumerate((gin, ico, rot, scale, mul, inst, set_mat_inst, to_points, switch, gout)):
        node.location = (200 * i, 0)
    return group


def display_material():
    """Emission of the splat colour mixed with transparency by opacity; reads the attributes both from
    instances (ellipsoid display) and from points (point display), whichever exists."""
    mat = bpy.data.materials.get(MATERIAL)
    if mat is not None:
        return mat
    mat = bpy.data.materials.new(MATERIAL)
    if bpy.app.version < (5, 0, 0):  # 5.0+: materials always use nodes (use_nodes is deprecated)
        mat.use_nodes = True
    if hasattr(mat, "surface_render_method"):  # EEVEE Next (4.2+)
        mat.surface_render_method = "DITHERED"
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.clear()
    out = nodes.new("ShaderNodeOutputMaterial")
    sums = {}
    for key, data_type in (("sb_color", "Vector"), ("sb_alpha", "Fac")):
        add = nodes.new("ShaderNodeVectorMath") if data_type == "Vector" else nodes.new("ShaderNodeMath")
        add.operation = "ADD"
        for i, kind in enumerate(("INSTANCER", "GEOMETRY")):
            attr = nodes.new("ShaderNodeAttribute")
            attr.attribute_type = kind
            attr.attribute_name = key
            links.new(attr.outputs[data_type], add.inputs[i])
        sums[key] = add
    emission = nodes.new("ShaderNodeEmission")
    links.new(sums["sb_color"].outputs["Vector"], emission.inputs["Color"])
    transparent = nodes.new("ShaderNodeBsdfTransparent")
    mix = nodes.new("ShaderNodeMixShader")
    links.new(sums["sb_alpha"].outputs["Value"], mix.inputs["Fac"])
    links.new(transparent.outputs["BSDF"], mix.inputs[1])
    links.new(emission.outputs["Emission"], mix.inputs[2])
    links.new(mix.outputs["Shader"], out.inputs["Surface"])
    return mat


def ensure_display(obj, points: bool | None = None, size: float | None = None) -> None:
    """Add (or update) the display modifier of a splat object."""
    mod = obj.modifiers.get(MODIFIER)
    if mod is None:
        mod = obj.modifiers.new(MODIFIER, "NODES")
    mod.node_group = display_node_group()
    for item in mod.node_group.interface.items_tree:
        if getattr(item, "in_out", "") != "INPUT":
            continue
        if item.name == "Points" and points is not None:
            mod[item.identifier] = bool(points)
        elif item.name == "Size" and size is not None:
            mod[item.identifier] = float(size)
    if obj.data.materials.get(MATERIAL) is None:
        obj.data.materials.append(display_material())
    obj.data.update()


def setup_scene_for_splats(scene, transparent_bounces: int = 512) -> None:
    """Colours as the engine renders them: view transform Standard (sRGB out, no tone mapping: AgX/Filmic
    wash splat colours out), no look, exposure 0, gamma 1; Cycles lets rays pass enough splat layers."""
    vs = scene.view_settings
    vs.view_transform = "Standard"
    vs.look = "None"
    vs.exposure, vs.gamma = 0.0, 1.0
    cycles = getattr(scene, "cycles", None)
    if cycles is not None:
        cycles.transparent_max_bounces = max(cycles.transparent_max_bounces, transparent_bounces)
        cycles.max_bounces = max(cycles.max_bounces, transparent_bounces)
