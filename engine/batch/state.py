"""What a batch has done: `<output>/batch_state.json`, one record per combination, written by the driver
(the one process that runs the batch) after every change.

A combination is done when its record says "done", carries the manifest's current fingerprint for it and its
output file exists; a rerun skips exactly those. Records of the `engine` backend also hold the job id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from shared_protocol.atomic import atomic_write_bytes, atomic_write_json
from shared_protocol.splatfile import write_splats

from .manifest import Combo, Manifest
from .summary import style_thumb_name, style_thumbnail

Log = Callable[[str], None]


class BatchState:
    def __init__(self, manifest: Manifest):
        self.manifest = manifest
        self.out = manifest.output
        (self.out / "thumbs").mkdir(parents=True, exist_ok=True)
        self.path = self.out / "batch_state.json"
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                self.records = json.loads(self.path.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{self.path}: not valid JSON ({e}); delete it to start over") from None

    def save(self) -> None:
        atomic_write_json(self.path, self.records, fsync=False)

    def is_done(self, c: Combo) -> bool:
        st = self.records.get(c.key, {})
        return (
            st.get("state") == "done"
            and st.get("fingerprint") == self.manifest.fingerprint(c)
            and bool(st.get("output"))
            and (self.out / st["output"]).is_file()
        )

    def pending(self) -> list[Combo]:
        return [c for c in self.manifest.combos() if not self.is_done(c)]

    def start(self, c: Combo, backend: str) -> None:
        self.records[c.key] = {
            **self._identity(c),
            "state": "running",
            "backend": backend,
            "submitted": time.time(),
        }
        self.save()

    def _identity(self, c: Combo) -> dict[str, Any]:
        return {
            "asset": str(c.asset),
            "style": str(c.style),
            "settings": c.settings,
            "overrides": c.overrides,
            "settings_name": c.settings_name,
            "fingerprint": self.manifest.fingerprint(c),
        }

    def finish(self, c: Combo, outcome: dict[str, Any], thumbnail_size: int) -> dict[str, Any]:
        """Store a task's outcome (`run_combo`'s return value): output arrays (io "driver"), thumbnails,
        the style thumbnail, then the record."""
        record = dict(outcome["record"])
        if outcome.get("result") is not None:
            write_splats(outcome["result"], self.out / record["output"])
        for name, png in (outcome.get("thumbs") or {}).items():
            atomic_write_bytes(self.out / "thumbs" / f"{c.key}.{name}.png", png, fsync=False)
        style_png = self.out / style_thumb_name(c.style)
        if thumbnail_size and not style_png.is_file():
            style_thumbnail(c.style, thumbnail_size, style_png)
        self.records[c.key] = {**self.records.get(c.key, {}), **self._identity(c), **record}
        self.save()
        return self.records[c.key]

    def fail(self, c: Combo, error: str) -> None:
        self.records[c.key] = {
            **self.records.get(c.key, {}),
            **self._identity(c),
            "state": "failed",
            "error": error[:4000],
            "finished": time.time(),
        }
        self.save()

    def done_count(self) -> int:
        return sum(1 for c in self.manifest.combos() if self.is_done(c))


def progress_bar(total: int, initial: int, enabled: bool):
    """A tqdm bar over the whole batch (combinations already done count as done)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="combo", desc="batch", disable=not enabled)


def short_error(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"[:4000]
