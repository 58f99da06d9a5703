"""What an `EngineClient` brings with it besides the wire: who it is (this user's client token for a loopback
engine, CURVE key files for a remote one) and the engine limits it checks before sending anything."""

from __future__ import annotations

import os
from typing import Any

from . import fields as F
from .errors import RemoteError
from .messages import Submit

TOKEN_ENV = "SPLATBRUSH_TOKEN_FILE"


def default_token_path() -> str:
    """Where this user's client token lives: $SPLATBRUSH_TOKEN_FILE or ~/.config/splatbrush/client.token."""
    return os.environ.get(TOKEN_ENV) or os.path.expanduser(
        os.path.join("~", ".config", "splatbrush", "client.token")
    )


_process_token: str | None = None


def load_token(path: str | None = None, create: bool = True) -> str:
    """This user's client token (32 hex digits): a loopback engine files the jobs a client submits under
    it, so only the same user sees them. Created 0600 (folder 0700) on first use; if it cannot be written,
    a token for this process only is used."""
    global _process_token
    path = path or default_token_path()
    try:
        with open(path, encoding="ascii") as f:
            token = f.read().strip()
        if F.TOKEN_RE.fullmatch(token):
            return token
    except (OSError, UnicodeDecodeError):
        pass
    if not create:
        raise FileNotFoundError(f"no client token at {path}")
    import secrets

    from .atomic import atomic_write_text

    token = secrets.token_hex(16)
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        atomic_write_text(path, token + "\n", mode=0o600)
    except OSError:
        _process_token = _process_token or token
        return _process_token
    return token


def load_key(key: bytes | str | os.PathLike, secret: bool) -> tuple[bytes, bytes | None]:
    """A z85 public key (40 bytes) or a zmq.auth certificate file -> (public, secret or None)."""
    if isinstance(key, bytes) and len(key) == 40:
        return key, None
    if isinstance(key, str) and len(key) == 40 and not os.path.exists(key):
        return key.encode(), None
    import zmq.auth

    path = os.fspath(key)
    if not os.path.isfile(path):
        raise ValueError(f"CURVE key {path!r} is neither a 40-character z85 key nor a key file")
    public, sec = zmq.auth.load_certificate(path)
    if secret and sec is None:
        raise ValueError(
            f"{path} holds no secret key; pass the .key_secret file written by `splatbrush keys generate`"
        )
    return public, sec


def check_submit_limits(limits: dict[str, Any], msg: Submit, nbytes: int) -> None:
    """Refuse locally what this engine's `welcome.limits` would refuse, before sending any bytes."""
    lim = limits or {}
    h, w = msg.style_image.shape[:2]
    s = msg.settings
    checks = [
        ("max_message_bytes", nbytes, f"the submit is {nbytes / 2**20:.0f} MiB", "too_large"),
        (
            "max_gaussians",
            msg.gaussians.num_gaussians,
            f"{msg.gaussians.num_gaussians} Gaussians",
            "limit",
        ),
        ("max_resolution", max(h, w), f"the style image is {w}x{h}", "limit"),
        ("max_resolution", s.size or 0, f"size={s.size}", "limit"),
        ("max_steps", s.steps or 0, f"steps={s.steps}", "limit"),
        ("max_views", s.views or 0, f"views={s.views}", "limit"),
        ("max_views", len(msg.cameras or []), f"{len(msg.cameras or [])} cameras", "limit"),
    ]
    checks += [
        (
            "max_resolution",
            max(c["width"], c["height"]),
            f"camera {i} is {c['width']}x{c['height']}",
            "limit",
        )
        for i, c in enumerate(msg.cameras or [])
    ]
    for key, value, what, code in checks:
        limit = lim.get(key)
        if isinstance(limit, int) and value > limit:
            raise RemoteError(code, f"{what}, over this engine's {key} of {limit} (checked before sending)")
