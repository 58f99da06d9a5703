"""Tests run inside real Blender (bpy); a package so that its conftest never shadows tests/conftest.py."""
