"""Differences between the Blender versions the add-on supports (4.2 LTS .. 5.3), in one place.

Geometry Nodes modifier inputs: up to 5.0 they are ID properties of the modifier (`mod["Socket_1"] = 1.5`,
drawn with `layout.prop(mod, '["Socket_1"]')`); Blender 5.3 has no ID properties on a NodesModifier (both
raise TypeError) and has each input as `mod.properties.inputs.<identifier>.value` (checked in bpy 5.3.0).
"""

from __future__ import annotations


def _input(mod, identifier: str):
    """5.3+: the modifier's input struct for a group socket `identifier` (None before 5.3)."""
    inputs = getattr(getattr(mod, "properties", None), "inputs", None)
    if inputs is None:
        return None
    found = getattr(inputs, identifier, None)
    if found is None:
        raise KeyError(f"modifier {mod.name!r} has no input {identifier!r}")
    return found


def set_modifier_input(mod, identifier: str, value) -> None:
    """Set a Geometry Nodes modifier input (a group interface socket's identifier, e.g. "Socket_1")."""
    item = _input(mod, identifier)
    if item is None:
        mod[identifier] = value
    else:
        item.value = value


def get_modifier_input(mod, identifier: str, default=None):
    """A Geometry Nodes modifier input's value (`default` where an older Blender has not stored one yet)."""
    item = _input(mod, identifier)
    if item is None:
        return mod[identifier] if identifier in mod.keys() else default
    return item.value


def has_modifier_input(mod, identifier: str) -> bool:
    """Has the modifier a stored value for this input? (5.3+: always, once the node group is set)."""
    try:
        item = _input(mod, identifier)
    except KeyError:
        return False
    return identifier in mod.keys() if item is None else True


def draw_modifier_input(layout, mod, identifier: str, text: str) -> None:
    """`layout.prop` of a Geometry Nodes modifier input, in every version."""
    item = _input(mod, identifier)
    if item is None:
        layout.prop(mod, f'["{identifier}"]', text=text)
    else:
        layout.prop(item, "value", text=text)
