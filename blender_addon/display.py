"""How splat objects are drawn: each Gaussian as the 3DGS renderer shows it (docs/blender.md, Display).

Geometry Nodes (`display_node_group`) instance one of three things per splat:
- Cards (input "Cards", switched on by `bake_for_camera`): a square in the plane through the splat's centre
  facing the baked camera, whose axes are the eigenvectors of the renderer's projected 2D covariance
  (`attributes.card_attributes`): it draws the renderer's 2D Gaussian exactly, and rays meet the cards in
  the order of their centres' depth, as 3DGS sorts them.
- Boxes (Cards off): a cube rotated by the quaternion and scaled by the standard deviations; the shader
  takes the ray's closest approach to the centre in the instance's object space (the unit sphere there):
  right from every side, not exactly ordered.
- Points: one point per splat (the light display for huge scenes).
Cards and boxes reach min(Size, sb_extent) standard deviations; the shader (`display_material`) draws

    alpha = min(0.99, opacity * exp(-d^2 / 2)),   0 below 1/255 (and on the boxes' back faces),

d the Mahalanobis distance, emitting the splat colour mixed with transparency: the sRGB-decoded colour
(`sb_color`, view transform Standard) or the display value (`sb_color_display`, view transform Raw, so that
splats blend in display space as 3DGS does; `setup_scene_for_splats`' default). The Gaussian attributes
themselves are never touched: only the derived sb_* ones.
"""

from __future__ import annotations

import math

import bpy
import numpy as np

from . import compat

NODE_GROUP = "Splatbrush Display"
MATERIAL = "Splatbrush Splat"
MODIFIER = "Splatbrush Display"
VERSION = 3  # node group / material layout; older ones (ico-spheres, flat alpha) are rebuilt
SIZE_DEFAULT = math.sqrt(2 * math.log(255.0))  # std devs where an opaque splat's alpha reaches 1/255
DISPLAY_SPACE = "Display space"  # the material's Value node: 1 = emit display values (view transform Raw)
TRANSPARENT_BOUNCES = 1024  # Cycles: each splat a ray passes costs one (a card) or two (a box)


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


def _current(datablock) -> bool:
    return datablock is not None and datablock.get("splatbrush_display_version") == VERSION


def _fresh(collection, name: str, *args):
    """A new datablock `name`, an outdated one of that name renamed away (objects using it keep it until
    `ensure_display` switches them)."""
    old = collection.get(name)
    if old is not None:
        old.name = f"{name} (old)"
    block = collection.new(name, *args)
    block["splatbrush_display_version"] = VERSION
    return block


def _group_interface(group) -> None:
    iface = group.interface
    iface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    size = iface.new_socket("Size", in_out="INPUT", socket_type="NodeSocketFloat")
    size.default_value, size.min_value, size.max_value = SIZE_DEFAULT, 0.5, 10.0
    size.description = "Half-size of each splat's card or box in standard deviations (3.33: the whole splat)"
    points = iface.new_socket("Points", in_out="INPUT", socket_type="NodeSocketBool")
    points.description = "Light display for huge scenes: one point per splat"
    cards = iface.new_socket("Cards", in_out="INPUT", socket_type="NodeSocketBool")
    cards.description = (
        "Camera-facing cards baked for one camera (exact for it; 'Splat View for Camera' bakes them for "
        "the scene camera); off: ellipsoids that look right from every side"
    )
    realize = iface.new_socket("Realize", in_out="INPUT", socket_type="NodeSocketBool")
    realize.description = "Cards as one mesh: much faster in Cycles; EEVEE then blends them unsorted"
    iface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")


def _extent(group, gin):
    """min(Size, sb_extent): a splat's box or card reaches no further than where its alpha is 1/255."""
    node = group.nodes.new("ShaderNodeMath")
    node.operation = "MINIMUM"
    group.links.new(_socket(gin, "Size", True), node.inputs[0])
    extent = _named_attribute(group.nodes, "sb_extent", "FLOAT")
    group.links.new(_socket(extent, "Attribute", True), node.inputs[1])
    return node.outputs[0]


def _instances(group, gin, mesh, rotation: str, scale: str, flat: float):
    """Instance `mesh` (a geometry socket) on every point, rotated by the `rotation` attribute (XYZ Euler) and
    scaled by `scale` x K (K = min(Size, sb_extent)); K and `flat` stored on the instances (sb_size,
    sb_flat) for the shader."""
    nodes, links = group.nodes, group.links
    k = _extent(group, gin)
    inst = nodes.new("GeometryNodeInstanceOnPoints")
    rot = _named_attribute(nodes, rotation, "FLOAT_VECTOR")
    sca = _named_attribute(nodes, scale, "FLOAT_VECTOR")
    mul = nodes.new("ShaderNodeVectorMath")
    mul.operation = "SCALE"
    links.new(_socket(sca, "Attribute", True), mul.inputs[0])
    links.new(k, _socket(mul, "Scale"))
    links.new(_socket(gin, "Geometry", True), _socket(inst, "Points"))
    links.new(mesh, _socket(inst, "Instance"))
    links.new(_socket(rot, "Attribute", True), _socket(inst, "Rotation"))
    links.new(_socket(mul, "Vector", True), _socket(inst, "Scale"))
    geometry = _socket(inst, "Instances", True)
    for name, value in (("sb_size", None), ("sb_flat", flat)):
        store = nodes.new("GeometryNodeStoreNamedAttribute")
        store.data_type, store.domain = "FLOAT", "INSTANCE"
        store.inputs["Name"].default_value = name
        links.new(geometry, _socket(store, "Geometry"))
        if value is None:
            links.new(k, _socket(store, "Value"))
        else:
            _socket(store, "Value").default_value = value
        geometry = _socket(store, "Geometry", True)
    return geometry


def _switch(group, condition, if_false, if_true):
    node = group.nodes.new("GeometryNodeSwitch")
    node.input_type = "GEOMETRY"
    group.links.new(condition, node.inputs[0])
    group.links.new(if_false, node.inputs[1])
    group.links.new(if_true, node.inputs[2])
    return node.outputs[0]


def display_node_group():
    group = bpy.data.node_groups.get(NODE_GROUP)
    if _current(group):
        return group
    group = _fresh(bpy.data.node_groups, NODE_GROUP, "GeometryNodeTree")
    _group_interface(group)
    nodes, links = group.nodes, group.links
    gin, gout = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")

    # ellipsoids: a cube (half-size 1) per point, rotated and scaled by std devs x Size
    cube = nodes.new("GeometryNodeMeshCube")
    cube.inputs["Size"].default_value = (2.0, 2.0, 2.0)
    boxes = _instances(group, gin, _socket(cube, "Mesh", True), "sb_rotation", "sb_scale", 0.0)
    # cards: a square (half-size 1, normal +z) per point, facing the baked camera
    square = nodes.new("GeometryNodeMeshGrid")
    square.inputs["Size X"].default_value = square.inputs["Size Y"].default_value = 2.0
    square.inputs["Vertices X"].default_value = square.inputs["Vertices Y"].default_value = 2
    uv = nodes.new("GeometryNodeStoreNamedAttribute")
    uv.data_type, uv.domain = "FLOAT_VECTOR", "POINT"
    uv.inputs["Name"].default_value = "sb_uv"
    links.new(_socket(square, "Mesh", True), _socket(uv, "Geometry"))
    links.new(_socket(nodes.new("GeometryNodeInputPosition"), "Position", True), _socket(uv, "Value"))
    cards = _instances(group, gin, _socket(uv, "Geometry", True), "sb_card_rotation", "sb_card_scale", 1.0)
    realize = nodes.new("GeometryNodeRealizeInstances")
    links.new(cards, _socket(realize, "Geometry"))
    cards = _switch(group, _socket(gin, "Realize", True), cards, _socket(realize, "Geometry", True))
    gaussians = _switch(group, _socket(gin, "Cards", True), boxes, cards)

    # points: one point per splat, radius = mean scale x Size / 3
    to_points = nodes.new("GeometryNodeMeshToPoints")
    mean = nodes.new("ShaderNodeVectorMath")
    mean.operation = "DOT_PRODUCT"
    mean.inputs[1].default_value = (1 / 9, 1 / 9, 1 / 9)
    links.new(_socket(_named_attribute(nodes, "sb_scale", "FLOAT_VECTOR"), "Attribute", True), mean.inputs[0])
    radius = nodes.new("ShaderNodeMath")
    radius.operation = "MULTIPLY"
    links.new(_socket(mean, "Value", True), radius.inputs[0])
    links.new(_socket(gin, "Size", True), radius.inputs[1])
    links.new(_socket(gin, "Geometry", True), _socket(to_points, "Mesh"))
    links.new(_socket(radius, "Value", True), _socket(to_points, "Radius"))

    shown = _switch(group, _socket(gin, "Points", True), gaussians, _socket(to_points, "Points", True))
    set_mat = nodes.new("GeometryNodeSetMaterial")
    set_mat.inputs["Material"].default_value = display_material()
    links.new(shown, _socket(set_mat, "Geometry"))
    links.new(_socket(set_mat, "Geometry", True), _socket(gout, "Geometry"))
    for i, node in enumerate(nodes):
        node.location = (200 * (i % 8), -200 * (i // 8))
    return group


class _Shader:
    """A few helpers that keep the material's node graph readable."""

    def __init__(self, tree):
        self.nodes, self.links = tree.nodes, tree.links

    def node(self, kind: str, **props):
        n = self.nodes.new(kind)
        for key, value in props.items():
            setattr(n, key, value)
        return n

    def math(self, op: str, a, b=None):
        n = self.node("ShaderNodeMath", operation=op)
        for i, value in enumerate((a, b)):
            if value is None:
                continue
            if isinstance(value, (int, float)):
                n.inputs[i].default_value = float(value)
            else:
                self.links.new(value, n.inputs[i])
        return n.outputs[0]

    def vmath(self, op: str, a, b):
        n = self.node("ShaderNodeVectorMath", operation=op)
        self.links.new(a, n.inputs[0])
        self.links.new(b, n.inputs["Scale" if op == "SCALE" else 1])
        return n.outputs["Value" if op == "DOT_PRODUCT" else "Vector"]

    def vector(self, value):
        n = self.node("ShaderNodeCombineXYZ")
        for i, v in enumerate(value):
            n.inputs[i].default_value = v
        return n.outputs["Vector"]

    def attribute(self, name: str, output: str):
        """The attribute from the instancer (Gaussian display) plus from the geometry (point display): one of
        them exists, the other reads 0."""
        outs = []
        for kind in ("INSTANCER", "GEOMETRY"):
            attr = self.node("ShaderNodeAttribute", attribute_type=kind, attribute_name=name)
            outs.append(attr.outputs[output])
        if output == "Vector":
            return self.vmath("ADD", *outs)
        return self.math("ADD", *outs)

    def to_object(self, socket, vector_type: str):
        n = self.node("ShaderNodeVectorTransform", vector_type=vector_type)
        n.convert_from, n.convert_to = "WORLD", "OBJECT"
        self.links.new(socket, n.inputs["Vector"])
        return n.outputs["Vector"]


def _gaussian_alpha(s: _Shader):
    """alpha = min(0.99, opacity exp(-d^2/2)) (0 below 1/255 and on back faces), d the Mahalanobis
    distance of the ray's closest approach to the centre. Instance object space is the unit cube holding
    +-Size std devs; |Q|^2 = |P|^2 - (P.D)^2 / D.D for the point P and the ray direction D there."""
    geo = s.node("ShaderNodeNewGeometry")
    p = s.to_object(geo.outputs["Position"], "POINT")
    d = s.to_object(geo.outputs["Incoming"], "VECTOR")
    pd = s.vmath("DOT_PRODUCT", p, d)
    dd = s.vmath("DOT_PRODUCT", d, d)
    pp = s.vmath("DOT_PRODUCT", p, p)
    box = s.math("MAXIMUM", s.math("SUBTRACT", pp, s.math("DIVIDE", s.math("MULTIPLY", pd, pd), dd)), 0.0)
    # cards: the point's coordinates on its own card (sb_uv, +-1 at the edges; also once realized)
    uv = s.node("ShaderNodeAttribute", attribute_type="GEOMETRY", attribute_name="sb_uv").outputs["Vector"]
    card = s.vmath("DOT_PRODUCT", uv, uv)
    flat = s.attribute("sb_flat", "Fac")
    q2 = s.math("ADD", s.math("MULTIPLY", box, s.math("SUBTRACT", 1.0, flat)), s.math("MULTIPLY", card, flat))
    size = s.attribute("sb_size", "Fac")
    d2 = s.math("MULTIPLY", q2, s.math("MULTIPLY", size, size))
    gauss = s.math("EXPONENT", s.math("MULTIPLY", d2, -0.5))
    # the point display has no sb_size (reads 0): d2 = 0 there, a flat disc of the splat's opacity
    alpha = s.math("MINIMUM", s.math("MULTIPLY", s.attribute("sb_alpha", "Fac"), gauss), 0.99)
    keep = s.math("GREATER_THAN", alpha, 1.0 / 255.0)
    front = s.math(
        "SUBTRACT", 1.0, s.math("MULTIPLY", geo.outputs["Backfacing"], s.math("SUBTRACT", 1.0, flat))
    )
    return s.math("MULTIPLY", s.math("MULTIPLY", alpha, keep), front)


def display_material():
    """Emission of the splat colour mixed with transparency by the Gaussian's alpha at the ray (see the
    module docstring); reads the attributes from instances (Gaussian display) or points (point display)."""
    mat = bpy.data.materials.get(MATERIAL)
    if _current(mat):
        return mat
    mat = _fresh(bpy.data.materials, MATERIAL)
    if bpy.app.version < (5, 0, 0):  # 5.0+: materials always use nodes (use_nodes is deprecated)
        mat.use_nodes = True
    if hasattr(mat, "surface_render_method"):  # EEVEE Next (4.2+): sorted alpha blending
        mat.surface_render_method = "BLENDED"
    if hasattr(mat, "cycles") and hasattr(mat.cycles, "emission_sampling"):
        mat.cycles.emission_sampling = "NONE"  # splats light nothing: no light tree of every splat
    s = _Shader(mat.node_tree)
    s.nodes.clear()
    out = s.node("ShaderNodeOutputMaterial")
    emission = s.node("ShaderNodeEmission")
    blend = s.node("ShaderNodeValue", name=DISPLAY_SPACE, label="Blend in display space (view Raw)")
    blend.outputs[0].default_value = 0.0
    colour = s.node("ShaderNodeMix", data_type="RGBA")
    s.links.new(blend.outputs[0], colour.inputs["Factor"])
    s.links.new(s.attribute("sb_color", "Vector"), _socket(colour, "A"))
    s.links.new(s.attribute("sb_color_display", "Vector"), _socket(colour, "B"))
    s.links.new(_socket(colour, "Result", True), emission.inputs["Color"])
    transparent = s.node("ShaderNodeBsdfTransparent")
    mix = s.node("ShaderNodeMixShader")
    s.links.new(_gaussian_alpha(s), mix.inputs["Fac"])
    s.links.new(transparent.outputs["BSDF"], mix.inputs[1])
    s.links.new(emission.outputs["Emission"], mix.inputs[2])
    s.links.new(mix.outputs["Shader"], out.inputs["Surface"])
    return mat


def ensure_display(obj, points: bool | None = None, size: float | None = None) -> None:
    """Add (or update to the current layout) the display modifier of a splat object."""
    mod = obj.modifiers.get(MODIFIER)
    if mod is None:
        mod = obj.modifiers.new(MODIFIER, "NODES")
    mod.node_group = display_node_group()
    for item in mod.node_group.interface.items_tree:
        if getattr(item, "in_out", "") != "INPUT":
            continue
        if item.name == "Points" and points is not None:
            compat.set_modifier_input(mod, item.identifier, bool(points))
        elif item.name == "Size" and (
            size is not None or not compat.has_modifier_input(mod, item.identifier)
        ):
            compat.set_modifier_input(mod, item.identifier, float(SIZE_DEFAULT if size is None else size))
    material = display_material()
    mats = obj.data.materials
    for i, m in enumerate(mats):
        if m is not None and m.name.startswith(MATERIAL) and m is not material:
            mats[i] = material
    if mats.get(MATERIAL) is None:
        mats.append(material)
    for scene in obj.users_scene:
        raise_bounces(scene)
    obj.data.update()


# ------------------------------------------------------------------------------------------- per camera
def local_view(scene, obj, cam_obj) -> dict:
    """The engine's camera dict (world_to_camera, fx, fy, cx, cy, width, height) of a scene camera, in
    `obj`'s local space (the splats' own coordinates; uniform object scale cancels out in pixels)."""
    from .scene_data import blender_camera

    cv = blender_camera(scene, cam_obj).to_opencv()
    c2w = np.linalg.inv(np.asarray(cv["world_to_camera"], dtype=np.float64))
    c2l = np.linalg.inv(np.array(obj.matrix_world, dtype=np.float64)) @ c2w
    c2l[:3, :3] /= np.linalg.norm(c2l[:3, :3], axis=0)  # a scaled object: the camera frame stays unit
    cv["world_to_camera"] = np.linalg.inv(c2l).tolist()
    return cv


def _set_input(obj, name: str, value) -> None:
    mod = obj.modifiers.get(MODIFIER)
    if mod is None or mod.node_group is None:
        return
    for item in mod.node_group.interface.items_tree:
        if getattr(item, "in_out", "") == "INPUT" and item.name == name:
            compat.set_modifier_input(mod, item.identifier, value)


def bake_for_camera(obj, arrays, scene, cam_obj) -> None:
    """Show a splat object as `cam_obj` sees it: SH colour toward the camera and the camera-facing cards
    (the renderer's projected footprints, see `attributes.card_attributes`) switched on, as one mesh when
    the scene renders with Cycles (faster there). `cam_obj` None: DC colours and the view-independent
    boxes again."""
    from .splats import write_display_attributes

    ensure_display(obj)
    view = local_view(scene, obj, cam_obj) if cam_obj is not None else None
    write_display_attributes(obj.data, arrays, view)
    _set_input(obj, "Cards", view is not None)
    _set_input(obj, "Realize", scene.render.engine == "CYCLES")  # EEVEE sorts instances, not triangles
    obj["splatbrush_display_camera"] = cam_obj.name if cam_obj is not None else ""
    obj.data.update()


def raise_bounces(scene, transparent_bounces: int = TRANSPARENT_BOUNCES, min_layers: int = 32) -> None:
    """Cycles: let rays pass `transparent_bounces` splat layers (Blender's default 8 shows only the first
    few splats), the first `min_layers` without Russian roulette (it adds noise). Only ever raised."""
    cycles = getattr(scene, "cycles", None)
    if cycles is None:
        return
    cycles.transparent_max_bounces = max(cycles.transparent_max_bounces, transparent_bounces)
    cycles.max_bounces = max(cycles.max_bounces, transparent_bounces)
    cycles.min_transparent_bounces = max(cycles.min_transparent_bounces, min(min_layers, transparent_bounces))


def setup_scene_for_splats(
    scene, transparent_bounces: int = TRANSPARENT_BOUNCES, display_space: bool = True, min_layers: int = 32
) -> None:
    """Colours as the engine renders them, and the splat objects baked toward the scene camera.

    display_space True (default): view transform Raw and the material emits the renderer's display values,
    so that splats blend as 3DGS blends them, in display space (other objects then show their linear
    values, darker); False: view transform Standard (sRGB out, no tone mapping: AgX/Filmic wash splat
    colours out), the material emits the sRGB-decoded colours and Blender blends them in linear light
    (soft edges and overlaps come out brighter than 3DGS). Either way no look, exposure 0, gamma 1; Cycles
    lets rays pass `transparent_bounces` splat layers, the first `min_layers` without Russian roulette (it
    adds noise)."""
    vs = scene.view_settings
    vs.view_transform = "Raw" if display_space else "Standard"
    vs.look = "None"
    vs.exposure, vs.gamma = 0.0, 1.0
    node = display_material().node_tree.nodes.get(DISPLAY_SPACE)
    if node is not None:
        node.outputs[0].default_value = 1.0 if display_space else 0.0
    raise_bounces(scene, transparent_bounces, min_layers)
    cam = scene.camera
    if cam is None or cam.type != "CAMERA" or cam.data.type != "PERSP":
        return
    from .splats import arrays_from_object, is_splat_object

    for obj in scene.objects:
        if is_splat_object(obj):
            bake_for_camera(obj, arrays_from_object(obj), scene, cam)
