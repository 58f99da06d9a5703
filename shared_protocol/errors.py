"""Typed errors of the Splatbrush wire protocol and the engine client.

Every error names the problem and, where it helps, what to do. `ProtocolError` covers anything wrong with a
message's bytes or fields (raised by the codec and by message validation, on either side); the server turns it
into an `error` reply carrying `code`. `RemoteError` is such a reply raised on the client side.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """A message is malformed: bad frames, bad JSON, a field of the wrong type or out of range."""

    code = "bad_message"


class MessageTooLarge(ProtocolError):
    """A message (or one of its frames, or its frame count) exceeds the configured limit."""

    code = "too_large"


class UnknownMessageType(ProtocolError):
    code = "unknown_type"


class VersionMismatch(ProtocolError):
    """The peers share no protocol version."""

    code = "version_mismatch"


class EngineError(RuntimeError):
    """Base class for errors the client raises about the engine or a job."""


class EngineUnavailable(EngineError):
    """Nothing answered at the address within the timeout."""

    def __init__(self, address: str, timeout: float, detail: str = ""):
        self.address = address
        self.timeout = timeout
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"no Splatbrush engine answered at {address} within {timeout:g} s{extra}; start one with "
            f"`splatbrush serve --address {address}` or check the address and CURVE keys"
        )


class RemoteError(EngineError):
    """The engine answered a request with an `error` message (`code` says which kind)."""

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(f"engine error [{code}]: {message}")


class JobFailed(EngineError):
    """The job ended in state `failed` (the engine's error message is included)."""


class JobCancelled(EngineError):
    """The job was cancelled before it produced a result."""
