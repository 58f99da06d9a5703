"""Guidance modules (loss terms on rendered views): one contract, see `base.py`."""

from .base import Guidance, GuidanceBatch, StepInfo

__all__ = ["Guidance", "GuidanceBatch", "StepInfo"]
