"""The one error type the splat file readers and writers raise."""

from __future__ import annotations

import os


class SplatFileError(ValueError):
    """A splat file could not be read or written. The message names the file and what is wrong.

    `path` is the file (a str, or None when there is no file), `problem` the explanation alone.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{problem}")
