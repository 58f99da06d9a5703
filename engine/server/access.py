"""Who is asking: every request is made by a `Principal` (the owner of the jobs it submits, and whether it
may shut the engine down or clean others' jobs).

    CURVE engine     owner "curve:<client public key>"; admin when that key is also in --admin-keys
    loopback engine  owner "user:<hash of the client's per-user token>" (sent in `hello`; the token file is
                     ~/.config/splatbrush/client.token, 0600); admin when the token is the engine user's own
                     token (or --admin-token-file's); a client that sent an empty one is "anonymous" (all
                     such clients share their jobs), never admin; a connection that sent no hello yet is
                     answered `hello_required` (the client says hello and asks again)
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from dataclasses import dataclass

from .security import KeyRing, SecurityError


class Unauthorized(PermissionError):
    code = "unauthorized"


class Forbidden(PermissionError):
    code = "forbidden"


class HelloRequired(PermissionError):
    """A loopback request from a connection that has not said `hello` (with its token) yet, e.g. after an
    engine restart: the client says hello and asks again."""

    code = "hello_required"


@dataclass(frozen=True)
class Principal:
    owner: str
    admin: bool = False

    def may_see(self, job_owner: str) -> bool:
        return self.admin or (bool(job_owner) and hmac.compare_digest(job_owner, self.owner))


def token_owner(token: str) -> str:
    return "user:" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:24]


class Access:
    """Maps connections (ROUTER identities) to principals. `max_identities` bounds the token table (least
    recently active connections are forgotten first; they send hello again when they reconnect)."""

    def __init__(
        self,
        clients: KeyRing | None = None,
        admins: KeyRing | None = None,
        admin_token: str | None = None,
        max_identities: int = 10_000,
    ):
        self.clients = clients
        self.admins = admins
        self.admin_token = admin_token
        self.max_identities = max_identities
        self._tokens: OrderedDict[bytes, str] = OrderedDict()

    @property
    def curve(self) -> bool:
        return self.clients is not None

    def callback(self, domain: str, key: bytes) -> bool:
        """zmq.auth credentials provider (ZAP thread): clients and admins get in, nobody else."""
        z85_key = key.decode("ascii", "replace")
        return any(r is not None and r.allowed(z85_key) for r in (self.clients, self.admins))

    def check_keys(self) -> None:
        """SecurityError when no key at all could get in (an empty or unreadable authorized keys folder)."""
        rings = [r for r in (self.clients, self.admins) if r is not None]
        if rings and not any(r.keys for r in rings):
            r = rings[0]
            raise SecurityError(
                f"{r.what} folder {r.folder} holds no readable .key files, so no client could get in"
            )

    def hello(self, identity: bytes, token: str) -> None:
        """Remember the token a loopback client sent in `hello` (a CURVE client is known by its key)."""
        if self.curve:
            return
        self._tokens[identity] = token  # "": an anonymous client (one without a token file)
        self._tokens.move_to_end(identity)
        while len(self._tokens) > self.max_identities:
            self._tokens.popitem(last=False)

    def principal(self, identity: bytes, user_id: str | None, required: bool = True) -> Principal:
        """Who sent a message. Unauthorized for a CURVE client whose key was revoked since it connected;
        HelloRequired for a loopback connection that sent no token yet (unless not `required`: anonymous)."""
        if self.clients is not None:
            admin = self.admins is not None and self.admins.allowed(user_id)
            if not admin and not self.clients.allowed(user_id):
                raise Unauthorized("this client's CURVE key is no longer authorized on this engine")
            return Principal(f"curve:{user_id}", admin)
        token = self._tokens.get(identity)
        if token is None:
            if required:
                raise HelloRequired("this connection has not said hello with its client token yet")
            return Principal("")  # sees no job
        self._tokens.move_to_end(identity)
        if not token:
            return Principal("anonymous")
        admin = self.admin_token is not None and hmac.compare_digest(token, self.admin_token)
        return Principal(token_owner(token), admin)

    def reload(self) -> None:
        for ring in (self.clients, self.admins):
            if ring is not None:
                ring.request_reload()
