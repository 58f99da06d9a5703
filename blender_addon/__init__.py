"""Splatbrush for Blender: stylize 3D Gaussian Splatting scenes (and meshes) with the look of a painting.

Nothing happens at import time (the bpy-free modules of this package are also used by plain tests):
`register()` imports the Blender side and registers the classes listed in `registration.classes`.
"""


def register():
    from . import registration

    registration.register()


def unregister():
    from . import registration

    registration.unregister()
