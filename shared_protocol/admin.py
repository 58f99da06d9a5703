"""Admin requests of protocol 2 (besides `shutdown` and cleaning others' jobs, see messages.py).

adopt {job_ids | null, owner | null} -> jobs    give jobs stored before ownership existed (owner "") an
                                                owner: the admin itself, or `owner` ("curve:<z85 public
                                                key>", "user:<24 hex>" or "anonymous"); null ids: all
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from . import fields as F
from .errors import ProtocolError
from .msgbase import Message, only_arrays

OWNER_RE = re.compile(r"curve:[0-9A-Za-z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}|user:[0-9a-f]{24}|anonymous")
"""The owners a job can have (engine.server.access): a CURVE client's key, a loopback token's hash."""


@dataclass
class Adopt(Message):
    TYPE: ClassVar[str] = "adopt"
    MIN_VERSION: ClassVar[int] = 2
    job_ids: list[str] | None = None
    owner: str | None = None

    @classmethod
    def from_wire(cls, body, arrays):
        F.check_keys(cls.TYPE, body, set(), {"job_ids", "owner"})
        only_arrays(cls.TYPE, arrays, set())
        ids = body.get("job_ids")
        if ids is not None:
            if not isinstance(ids, list) or len(ids) > 100_000:
                raise ProtocolError("adopt.job_ids must be null or a list of job ids")
            ids = [F.job_id("adopt.job_ids[]", j) for j in ids]
        return cls(ids, F.opt_str("adopt.owner", body.get("owner"), 64, OWNER_RE))
