"""Who may talk to the engine: loopback by default; any other bind needs CURVE keys and a folder of
authorized client public keys (checked by a zmq.auth ThreadAuthenticator)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import zmq

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
DEFAULT_KEY_DIR = Path("~/.config/splatbrush/keys")


class SecurityError(ValueError):
    """A bind or key setup that would let strangers in, or keys that cannot be used."""


def is_loopback(address: str) -> bool:
    """True for tcp://127.x.x.x / localhost / [::1] and for ipc:// and inproc:// (local by construction)."""
    if address.startswith(("ipc://", "inproc://")):
        return True
    m = re.match(r"^tcp://(\[[^\]]+\]|[^:/]+):(\d+|\*)$", address)
    if not m:
        raise SecurityError(f"address {address!r} is not tcp://HOST:PORT, ipc://PATH or inproc://NAME")
    host = m.group(1)
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def generate_keys(directory: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Write `<name>.key` (public, share it) and `<name>.key_secret` (keep it) with zmq.auth."""
    import zmq.auth

    if not re.match(r"^[A-Za-z0-9_.\-]{1,64}$", name):
        raise SecurityError(f"key name {name!r} must be 1..64 letters, digits, '_', '.', '-'")
    d = Path(directory).expanduser()
    d.mkdir(parents=True, exist_ok=True)
    public, secret = d / f"{name}.key", d / f"{name}.key_secret"
    for p in (public, secret):
        if p.exists():
            raise SecurityError(f"{p} already exists; pick another --name or --dir, or delete it first")
    pub, sec = zmq.auth.create_certificates(str(d), name)
    os.chmod(sec, 0o600)
    return Path(pub), Path(sec)


def load_server_secret(path: str | os.PathLike) -> tuple[bytes, bytes]:
    import zmq.auth

    p = Path(path).expanduser()
    if not p.is_file():
        raise SecurityError(
            f"server key {p} not found; create one with `splatbrush keys generate --name server`"
        )
    public, secret = zmq.auth.load_certificate(str(p))
    if not secret:
        raise SecurityError(f"{p} holds no secret key; pass the server's .key_secret file")
    return public, secret


def check_authorized_dir(path: str | os.PathLike) -> Path:
    d = Path(path).expanduser()
    if not d.is_dir():
        raise SecurityError(f"authorized keys folder {d} does not exist; put the clients' .key files there")
    if not any(d.glob("*.key")):
        raise SecurityError(f"authorized keys folder {d} holds no .key files, so no client could get in")
    return d


def setup_curve(
    ctx: zmq.Context, sock: zmq.Socket, secret_file: str | os.PathLike, authorized_dir: str | os.PathLike
):
    """Make `sock` a CURVE server that admits only clients whose public key is in `authorized_dir`.
    Returns the running authenticator (stop it when the socket closes)."""
    from zmq.auth.thread import ThreadAuthenticator

    public, secret = load_server_secret(secret_file)
    d = check_authorized_dir(authorized_dir)
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(d))
    sock.curve_server = True
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    return auth
