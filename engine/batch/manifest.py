"""The batch manifest (TOML): assets x styles x settings, where results go, and how Ray runs them.

    output = "batch_out"                 # folder for results, thumbnails, records and index.html
    address = "tcp://127.0.0.1:5557"     # optional: the engine of the `engine` backend
    assets = ["scenes/donut.ply", "file:///mnt/shared/guitar.compressed.ply"]
    styles = ["styles/starry.jpg", "styles/wave.jpg"]

    [[settings]]                         # optional, repeatable; default: one entry, preset "painterly"
    name = "quick"                       # label used in file names (default: the preset)
    preset = "preview"
    steps = 60                           # also size, views, seed, device
    overrides = { lr = 0.04 }            # any other StylizeConfig field (local and Ray backends)

    [ray]                                # optional: the Ray backend (docs/batch.md)
    num_gpus = 1                         # per task; "auto" (default): 1 when the cluster has GPUs, else 0
    num_cpus = 1                         # per task
    max_retries = 3                      # Ray retries of a task whose worker died
    retry_exceptions = false             # also retry tasks that raised
    io = "shared"                        # "shared": tasks read/write the paths; "driver": object store
    address = "auto"                     # auto | local | ray://HOST:PORT | HOST:PORT (`--ray` wins)
    runtime_env = { pip = ["splatbrush==0.1.0"] }   # passed to ray.init when this batch connects

Relative paths are relative to the manifest. Paths may be `file://` URIs; other schemes (s3://, gs://, http://)
are refused with a message: mount the storage on every node and name the mounted path.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from shared_protocol import DEFAULT_PRESET

SETTING_KEYS = {"name", "preset", "steps", "size", "views", "seed", "device", "overrides"}
TOP_KEYS = {"output", "address", "assets", "styles", "settings", "ray"}
IO_MODES = ("shared", "driver")


class ManifestError(ValueError):
    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {problem}")


@dataclass
class RayOptions:
    """The `[ray]` table of a manifest: what each Ray task asks for and how data moves."""

    num_gpus: float | str = "auto"
    """GPUs per task (fractions share a GPU); "auto": 1 when the cluster has GPUs, else 0 (CPU tasks)."""
    num_cpus: float = 1.0
    """CPUs per task (also the torch threads of a CPU task)."""
    max_retries: int = 3
    """How often Ray reruns a task whose worker process died (crash, node lost, OOM kill)."""
    retry_exceptions: bool = False
    """Also rerun tasks that raised an exception (off: a bad input fails at once, with its message)."""
    io: str = "shared"
    """"shared": tasks read inputs and write outputs at the manifest's paths, which every node must see;
    "driver": the driver reads inputs and writes outputs, tasks get and return arrays via the object store."""
    address: str | None = None
    """Cluster to connect to when `--ray` names none: auto | local | ray://HOST:PORT | HOST:PORT."""
    runtime_env: dict[str, Any] | None = None
    """Ray runtime environment for the job (e.g. {"pip": [...]}), used when this batch calls ray.init."""


@dataclass
class Combo:
    """One asset x style x settings combination."""

    key: str
    """Unique label, used in file names: `<asset>__<style>__<settings name>`."""
    asset: Path
    style: Path
    settings_name: str
    settings: dict[str, Any]
    """The JobSettings part: preset, steps, size, views, seed, device."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Other StylizeConfig fields."""


@dataclass
class Manifest:
    path: Path
    output: Path
    address: str | None
    assets: list[Path]
    styles: list[Path]
    settings: list[dict[str, Any]] = field(default_factory=list)
    ray: RayOptions = field(default_factory=RayOptions)
    _hashes: dict[Path, str] = field(default_factory=dict, repr=False)

    def combos(self) -> list[Combo]:
        out = []
        for a in self.assets:
            for s in self.styles:
                for st in self.settings:
                    name = st.get("name") or st.get("preset", DEFAULT_PRESET)
                    key = "__".join(slug(x) for x in (stem(a), stem(s), name))
                    job = {k: v for k, v in st.items() if k not in ("name", "overrides")}
                    out.append(Combo(key, a, s, name, job, dict(st.get("overrides") or {})))
        keys = [c.key for c in out]
        if len(set(keys)) != len(keys):
            raise ManifestError(
                self.path, "two combinations get the same name; give settings distinct `name`s"
            )
        return out

    def file_hash(self, p: Path) -> str:
        """sha256 of a file's bytes (cached for the life of this manifest)."""
        if p not in self._hashes:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            self._hashes[p] = h.hexdigest()
        return self._hashes[p]

    def fingerprint(self, c: Combo) -> str:
        """What a combination's output depends on: the bytes of its asset and style, and its settings.
        An output whose record carries another fingerprint is recomputed."""
        what = {
            "asset": self.file_hash(c.asset),
            "style": self.file_hash(c.style),
            "settings": c.settings,
            "overrides": c.overrides,
        }
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:32]


def stem(p: Path) -> str:
    name = p.name
    for suffix in (".compressed.ply", ".ply", ".splat", ".spz", ".jpg", ".jpeg", ".png"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return p.stem


def slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", s).strip("-")[:60] or "x"


def local_path(manifest: Path, where: str, value: str) -> Path:
    """A manifest path or `file://` URI as a local path (relative to the manifest's folder)."""
    if "://" in value:
        u = urlparse(value)
        if u.scheme != "file":
            raise ManifestError(
                manifest,
                f"{where}: {value!r}: URI scheme {u.scheme!r} is not supported. Batch reads and writes "
                "local or shared-filesystem paths (and file:// URIs); mount the storage on the driver and "
                "every worker node (NFS, s3fs, gcsfuse, ...) and give the mounted path",
            )
        if u.netloc not in ("", "localhost"):
            raise ManifestError(manifest, f"{where}: {value!r}: file:// URIs must not name a host")
        value = unquote(u.path)
    p = Path(value)
    return p if p.is_absolute() else manifest.parent / p


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(path, "manifest not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(path, f"not valid TOML: {e}") from None


def _check_settings(path: Path, settings: Any) -> list[dict[str, Any]]:
    from shared_protocol.messages import JobSettings

    if not isinstance(settings, list) or not all(isinstance(s, dict) for s in settings) or not settings:
        raise ManifestError(path, "`settings` must be a list of tables ([[settings]])")
    for i, s in enumerate(settings):
        bad = set(s) - SETTING_KEYS
        if bad:
            raise ManifestError(
                path, f"settings[{i}]: unknown key(s) {sorted(bad)} (known: {sorted(SETTING_KEYS)})"
            )
        try:
            job_keys = {k: v for k, v in s.items() if k not in ("name", "overrides")}
            job = JobSettings.from_dict(job_keys, f"settings[{i}]")
        except ValueError as e:
            raise ManifestError(path, str(e)) from None
        overrides = s.get("overrides", {})
        if not isinstance(overrides, dict):
            raise ManifestError(path, f"settings[{i}].overrides must be a table of StylizeConfig fields")
        clash = sorted(set(overrides) & (SETTING_KEYS | {"progress_bar"}))
        if clash:
            raise ManifestError(path, f"settings[{i}].overrides: set {clash} in the settings table itself")
        if overrides:
            from engine.stylize import StylizeConfig

            try:
                StylizeConfig.from_preset(job.preset, **overrides)
            except (TypeError, ValueError) as e:
                raise ManifestError(path, f"settings[{i}].overrides: {e}") from None
    return settings


def _ray_options(path: Path, table: Any) -> RayOptions:
    if table is None:
        return RayOptions()
    if not isinstance(table, dict):
        raise ManifestError(path, "`ray` must be a table ([ray])")
    known = set(RayOptions.__dataclass_fields__)
    bad = set(table) - known
    if bad:
        raise ManifestError(path, f"ray: unknown key(s) {sorted(bad)} (known: {sorted(known)})")
    o = RayOptions(**table)

    def number(name: str, v: Any, low: float, allow_zero: bool) -> None:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (v > low or (allow_zero and v == 0))
        if not ok:
            raise ManifestError(path, f"ray.{name} = {v!r}: must be a number {'>=' if allow_zero else '>'} 0")

    if o.num_gpus != "auto":
        number("num_gpus", o.num_gpus, 0, True)
    number("num_cpus", o.num_cpus, 0, False)
    if not isinstance(o.max_retries, int) or isinstance(o.max_retries, bool) or o.max_retries < 0:
        raise ManifestError(path, f"ray.max_retries = {o.max_retries!r}: must be an integer >= 0")
    if not isinstance(o.retry_exceptions, bool):
        raise ManifestError(path, f"ray.retry_exceptions = {o.retry_exceptions!r}: must be true or false")
    if o.io not in IO_MODES:
        raise ManifestError(path, f"ray.io = {o.io!r}: choose one of {IO_MODES}")
    if o.address is not None and not isinstance(o.address, str):
        raise ManifestError(path, f"ray.address = {o.address!r}: must be a string (auto, local, ray://H:P)")
    if o.runtime_env is not None and not isinstance(o.runtime_env, dict):
        raise ManifestError(path, "ray.runtime_env must be a table")
    return o


def load_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    data = _read_toml(path)
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ManifestError(path, f"unknown key(s) {sorted(unknown)} (known: {sorted(TOP_KEYS)})")

    def paths(key: str) -> list[Path]:
        v = data.get(key)
        if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
            raise ManifestError(path, f"`{key}` must be a non-empty list of file paths")
        out = [local_path(path, key, x) for x in v]
        missing = [str(p) for p in out if not p.is_file()]
        if missing:
            raise ManifestError(path, f"`{key}`: file(s) not found: {', '.join(missing)}")
        return out

    settings = _check_settings(path, data.get("settings", [{"preset": DEFAULT_PRESET}]))
    output = data.get("output", "batch_out")
    if not isinstance(output, str):
        raise ManifestError(path, "`output` must be a folder path")
    address = data.get("address")
    if address is not None and not isinstance(address, str):
        raise ManifestError(path, "`address` must be a string like tcp://127.0.0.1:5557")
    return Manifest(
        path,
        local_path(path, "output", output),
        address,
        paths("assets"),
        paths("styles"),
        settings,
        _ray_options(path, data.get("ray")),
    )
