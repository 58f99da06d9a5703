"""`StylizeConfig`: every setting of a stylization job, and the named presets.

    config = StylizeConfig.from_preset("fast", steps=None, size=256)   # None means "keep the preset's value"

Presets are plain dicts of field overrides (`PRESETS`), so they can be printed, diffed and sent over the wire.
`fast` is the CPU default: the weight-free guidance, measured by `benchmarks/bench_stylize.py`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

GUIDANCE_NAMES = ("weightfree", "dssd", "sos", "csd", "quality")
SCHEDULES = ("weightfree", "paper")


@dataclass
class WeightFreeConfig:
    """Settings of the weight-free guidance (`engine/guidance/weightfree.py`); see docs/stylization.md."""

    color_weight: float = 6.0
    """Weight of the sliced Wasserstein distance between CIELAB pixel colours of the object and the style."""
    color_directions: int = 64
    """Random projection directions per step for the colour distance."""
    texture_weight: float = 1.0
    """Weight of the texture term (sliced Wasserstein of fixed random-filter responses, several scales)."""
    texture_kernels: tuple[int, ...] = (3, 7)
    """Kernel sizes of the fixed random filter banks (one bank per size)."""
    texture_filters: int = 24
    """Filters per bank."""
    texture_scales: int = 3
    """Image pyramid levels the filter banks run on (1 = full resolution only)."""
    texture_directions: int = 32
    """Random projection directions per bank and scale for the texture distance."""
    sample_points: int = 4096
    """Object pixels compared per statistic and step (a seeded random subset when there are more)."""
    direction_sets: int = 8
    """Fixed direction sets (style quantiles precomputed per set); step k uses set k mod this."""
    gram_weight: float = 0.0
    """Weight of the Gram-matrix statistics of the same filter responses (the method.md starting recipe)."""
    style_height: int = 256
    """The style image is resized to this height before its statistics are taken."""
    content_weight: float = 1.0
    """Weight of the luminance structure term against the original render."""
    content_blur: float = 1.0
    """Gaussian blur sigma (pixels) applied to both luminances before the content term: strokes may vary
    the luminance at scales below it without penalty."""
    seed: int = 1234
    """Seed of the fixed random filter banks (independent of the job seed: the statistics are fixed)."""


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
    """Guidance modules to use. Model-based ones ("dssd", "sos", "csd", "quality") are used only when their
    weights are available; if none is, the job falls back to "weightfree" (said in one log line)."""
    schedule: str = "weightfree"
    """Which phase list drives the steps: "weightfree" (one global phase) or "paper" (progressive outpainting
    of the supplement, scaled to `steps`)."""
    loss_weights: dict[str, float] = field(default_factory=dict)
    """Extra multipliers on named loss terms (e.g. {"dssd": 0.5}); 1.0 for terms not listed."""
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
    preview_every: int = 10
    """Send a preview image with the progress event every this many steps (0: never)."""
    checkpoint_every: int = 50
    """Save a checkpoint every this many steps when a checkpoint_dir is given (0: only when stopped)."""
    final_metrics: bool = True
    """Compute style distance and SSIM on all views at the end (costs one render per view, twice)."""
    progress_bar: bool = True
    """Show a tqdm progress bar on stderr."""
    weightfree: WeightFreeConfig = field(default_factory=WeightFreeConfig)
    """Settings of the weight-free guidance."""
    module_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Free-form options for the model-based guidance modules, keyed by module name."""

    def __post_init__(self) -> None:
        if isinstance(self.weightfree, dict):
            self.weightfree = WeightFreeConfig(**_tuples(self.weightfree))
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
        unknown = [g for g in self.guidance if g not in GUIDANCE_NAMES]
        if unknown or not self.guidance:
            raise bad("guidance", self.guidance, f"choose a non-empty subset of {GUIDANCE_NAMES}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", self.schedule, f"choose one of {SCHEDULES}")
        if len(self.background) != 3:
            raise bad("background", self.background, "must be 3 floats (RGB in [0, 1])")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_preset(cls, name: str = "fast", **overrides: Any) -> StylizeConfig:
        """The preset `name` with `overrides` applied; overrides that are None are ignored."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        values: dict[str, Any] = {"preset": name, **PRESETS[name]}
        given = {k: v for k, v in overrides.items() if v is not None}
        if isinstance(given.get("weightfree"), dict) and isinstance(values.get("weightfree"), dict):
            given["weightfree"] = {**values["weightfree"], **given["weightfree"]}  # merge, not replace
        values.update(given)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown StylizeConfig fields {unknown}; known: {sorted(known)}")
        if isinstance(values.get("weightfree"), dict):
            values["weightfree"] = WeightFreeConfig(
                **_tuples({**asdict(WeightFreeConfig()), **values["weightfree"]})
            )
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> StylizeConfig:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StylizeConfig:
        known = {f.name for f in fields(cls)}
        return cls(**_tuples({k: v for k, v in d.items() if k in known}))


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    """JSON turns tuples into lists; turn them back for the tuple-typed fields."""
    out = dict(d)
    for k in ("texture_kernels", "guidance", "background"):
        if isinstance(out.get(k), list):
            out[k] = tuple(out[k])
    return out


MODEL_GUIDANCE = ("dssd", "sos", "csd", "quality")

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
        "guidance": MODEL_GUIDANCE,
        "schedule": "paper",
        "lr": 0.01,
        "n_opt": 10,
        "checkpoint_every": 200,
        "preview_every": 25,
    },
}
