"""Errors raised when reading or writing scene files."""

from __future__ import annotations

import os


class SceneFormatError(ValueError):
    """A scene file could not be read or written. The message names the file and what is wrong."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{problem}")
