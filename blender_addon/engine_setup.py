"""Which engine to talk to and how to start one (no bpy): options, address checks, Engine Python detection,
the engine's command line and its log.

Everything here may block (a subprocess probe, reading a log): call it from the job's worker thread, never
from Blender's main thread (see `jobs.StylizeTask.start_thread`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ADDRESS_RE = re.compile(r"^(tcp)://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d+)$")
PYTHON_ENV = "SPLATBRUSH_ENGINE_PYTHON"
"""Environment variable naming the Engine Python (used when the preference is empty)."""
SET_PYTHON_HINT = (
    "In Edit > Preferences > Add-ons > Splatbrush set 'Engine Python' to a Python that has Splatbrush "
    "installed (e.g. <project>/.venv/bin/python, made by scripts/setup_venv.sh; Blender's own Python has no "
    "engine), or start an engine yourself with `splatbrush serve`."
)


def default_log_path() -> Path:
    return Path(tempfile.gettempdir()) / "splatbrush-engine.log"


@dataclass
class EngineOptions:
    address: str = "tcp://127.0.0.1:5557"
    """ZeroMQ address of the engine (tcp://HOST:PORT)."""
    auto_start: bool = True
    """Start a local engine when none answers at `address` (loopback addresses only)."""
    python: str = ""
    """Python interpreter that has the engine installed (`<python> -m engine serve`); empty: detect one."""
    server_public_key: str = ""
    """Remote engine's CURVE public key (Z85, 40 chars); empty for a local engine."""
    client_keys: str = ""
    """This client's CURVE key pair: the `.key_secret` file written by `splatbrush keys generate`."""
    model_cache: str = ""
    """Folder for model weights (HF_HOME of the started engine); empty: the engine's default."""
    state_dir: str = ""
    """State directory of the started engine; empty: the engine's default."""
    start_timeout: float = 120.0
    """Seconds to wait for a started engine to answer."""
    heartbeat_timeout: float = 6.0
    """Seconds without any answer from the engine after which a running job is declared lost."""
    earlier_jobs: str = "cancel"
    """Unfinished jobs of an earlier session found on an engine this add-on started: "cancel" them (listed
    in the status) or "keep" them (they run first; listed too)."""

    def is_loopback(self) -> bool:
        return is_loopback(self.address)


def validate_address(address: str, what: str = "engine address") -> str:
    """`address` stripped, or ValueError with a message that quotes it and shows the expected form."""
    text = address.strip()
    example = "tcp://127.0.0.1:5557"
    m = ADDRESS_RE.match(text)
    if m is None:
        if re.match(r"^[A-Za-z0-9_.\[\]:-]+:\d+$", text):
            raise ValueError(f"{what} {address!r} lacks the scheme: write tcp://{text} (e.g. {example})")
        raise ValueError(f"{what} {address!r} is not of the form tcp://HOST:PORT (e.g. {example})")
    port = int(m.group(3))
    if not 1 <= port <= 65535:
        raise ValueError(f"{what} {address!r}: port {port} is outside 1-65535")
    host = m.group(2)
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as e:
            raise ValueError(f"{what} {address!r}: {host} is not an IPv6 address") from e
    return text


def is_loopback(address: str) -> bool:
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


# ------------------------------------------------------------------------------------------ Engine Python
def has_engine(python: str, timeout: float = 30.0) -> bool:
    """Does `python` (a path or a command line) import Splatbrush's `engine` package? (runs a subprocess)"""
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('engine.server') is None)"
    try:
        done = subprocess.run([*python_argv(python), "-c", probe], capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return False
    return done.returncode == 0


def python_argv(python: str) -> list[str]:
    """A path as is (Windows paths have backslashes); otherwise a command line such as "python3 -X utf8"."""
    python = python.strip()
    if not python:
        raise ValueError("empty Engine Python")
    return [python] if os.path.exists(python) else shlex.split(python, posix=os.name != "nt")


def _shebang_python(script: str) -> str | None:
    try:
        with open(script, "rb") as f:
            first = f.readline(512).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if first.startswith("#!"):
        cand = first[2:].strip().split()[0] if first[2:].strip() else ""
        if cand and os.path.isfile(cand):
            return cand
    folder = Path(script).resolve().parent  # a venv's bin/ (or Scripts\ on Windows)
    for name in ("python", "python3", "python.exe"):
        if (folder / name).is_file():
            return str(folder / name)
    return None


def python_candidates() -> list[str]:
    """Where a Splatbrush install may be, best first: $SPLATBRUSH_ENGINE_PYTHON, the `splatbrush` command's
    Python, a `.venv` of a project checkout around this add-on (development installs)."""
    out: list[str] = []
    if os.environ.get(PYTHON_ENV):
        out.append(os.environ[PYTHON_ENV])
    script = shutil.which("splatbrush")
    if script:
        py = _shebang_python(script)
        if py:
            out.append(py)
    here = Path(__file__).resolve()
    for parent in list(here.parents)[:4]:
        for rel in (".venv/bin/python", ".venv/Scripts/python.exe"):
            if (parent / rel).is_file():
                out.append(str(parent / rel))
    return list(dict.fromkeys(out))


def detect_engine_python(candidates: list[str] | None = None) -> str | None:
    """The first candidate that has the engine, or None. Never Blender's own Python (`sys.executable`)."""
    for cand in python_candidates() if candidates is None else candidates:
        if os.path.realpath(cand) != os.path.realpath(sys.executable) and has_engine(cand):
            return cand
    return None


def resolve_engine_python(options: EngineOptions) -> str:
    """The Python to start the engine with: the preference, else a detected install; RuntimeError (saying
    exactly what to set) when there is none, or when the preference's Python has no engine."""
    if options.python.strip():
        return options.python.strip()
    found = detect_engine_python()
    if found is None:
        raise RuntimeError(f"no Engine Python is set and no Splatbrush install was found. {SET_PYTHON_HINT}")
    return found


# ------------------------------------------------------------------------------------------ start, log
def engine_command(options: EngineOptions, python: str | None = None) -> list[str]:
    cmd = [*python_argv(python or options.python), "-m", "engine", "serve", "--address", options.address]
    if options.state_dir:
        cmd += ["--state-dir", options.state_dir]
    return cmd


def start_local_engine(options: EngineOptions, log_path: Path | None = None) -> subprocess.Popen:
    """Launch `<python> -m engine serve --address A` in the background; its output goes to `log_path`."""
    if not options.is_loopback():
        raise ValueError(f"will not start an engine for the non-loopback address {options.address}")
    python = resolve_engine_python(options)
    env = dict(os.environ)
    if options.model_cache:
        env["HF_HOME"] = options.model_cache
    try:
        with open(log_path, "ab") if log_path else contextlib.nullcontext(subprocess.DEVNULL) as log:
            return subprocess.Popen(
                engine_command(options, python), stdout=log, stderr=subprocess.STDOUT, env=env
            )
    except (OSError, ValueError) as e:
        raise RuntimeError(f"could not start the engine with {python!r}: {e}. {SET_PYTHON_HINT}") from e


def log_size(log_path: Path | None) -> int:
    try:
        return os.path.getsize(log_path) if log_path else 0
    except OSError:
        return 0


def log_tail(log_path: Path | None, since: int = 0, lines: int = 3, max_chars: int = 400) -> str:
    """The last non-empty lines of the engine's log written after byte `since` (the real cause of a failed
    start), or ""."""
    if log_path is None:
        return ""
    try:
        with open(log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(since, f.tell() - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(tail)[-max_chars:]
