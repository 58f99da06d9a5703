"""The base of every typed message (`Message`) and a check shared by the message modules."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, ClassVar

import numpy as np

from .errors import ProtocolError


def only_arrays(where: str, arrays: dict[str, np.ndarray], allowed: set[str]) -> None:
    bad = set(arrays) - allowed
    if bad:
        raise ProtocolError(f"{where}: unexpected array(s) {sorted(bad)}")


class Message:
    TYPE: ClassVar[str]
    MIN_VERSION: ClassVar[int] = 1
    """The first protocol version that has this message (older headers carrying it are refused)."""

    def to_wire(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {f.name: getattr(self, f.name) for f in fields(self)}, {}  # type: ignore[arg-type]

    @classmethod
    def from_wire(cls, body: dict[str, Any], arrays: dict[str, np.ndarray]) -> Message:
        raise NotImplementedError
