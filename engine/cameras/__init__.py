"""Cameras (OpenCV convention), conversions from Blender / INRIA / NeRF, and orbit view sampling."""

from .camera import Camera, CameraError

__all__ = ["Camera", "CameraError"]
