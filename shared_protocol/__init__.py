"""Splatbrush shared protocol: the wire format between the engine and its clients (Blender add-on, scripts).

Pure Python + numpy (+ pyzmq for the client); no torch, so the Blender add-on can vendor this package.
Import the client from `shared_protocol.client` (it needs pyzmq); this package imports nothing heavy.
"""

from .errors import (
    EngineError,
    EngineUnavailable,
    JobCancelled,
    JobFailed,
    MessageTooLarge,
    ProtocolError,
    RemoteError,
    UnknownMessageType,
    VersionMismatch,
)
from .messages import PROTOCOL_VERSION, SUPPORTED_VERSIONS, JobInfo, JobSettings
from .payloads import DEFAULT_PRESET

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_PRESET",
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "EngineError",
    "EngineUnavailable",
    "JobCancelled",
    "JobFailed",
    "JobInfo",
    "JobSettings",
    "MessageTooLarge",
    "ProtocolError",
    "RemoteError",
    "UnknownMessageType",
    "VersionMismatch",
    "__version__",
]
