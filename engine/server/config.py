"""`ServerConfig`: everything an engine is started with (address, keys, limits, memory bounds)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_ADDRESS = "tcp://127.0.0.1:5557"
DEFAULT_STATE_DIR = "~/.local/state/splatbrush"


@dataclass
class ServerConfig:
    address: str = DEFAULT_ADDRESS
    """Where to bind. Anything but loopback/ipc needs curve_secret_key and authorized_keys."""
    state_dir: str = DEFAULT_STATE_DIR
    """Folder of the job store (created 0700 if missing)."""
    device: str = "auto"
    """Device jobs run on when they ask for 'auto' (auto: cuda if available, else cpu)."""
    workers: int = 1
    """Workers running jobs at once, each on `device` (engine.server.pool)."""
    devices: list[str] | None = None
    """One worker per entry instead ("cuda:0", "cuda:1", "cpu"; "auto": every visible GPU, else one CPU
    worker); jobs asking for 'auto' run on their worker's device. Excludes workers > 1."""
    curve_secret_key: str | None = None
    """The server's .key_secret file (`splatbrush keys generate --name server`)."""
    authorized_keys: str | None = None
    """Folder of authorized client public .key files (re-read when it changes or on SIGHUP)."""
    admin_keys: str | None = None
    """CURVE: folder of the public .key files of admins (may shut the engine down, see and clean every job).
    Admins get in even when their key is not in authorized_keys."""
    admin_token_file: str | None = None
    """Loopback: the client token file whose holder is admin (default: this user's own client token,
    $SPLATBRUSH_TOKEN_FILE or ~/.config/splatbrush/client.token, created if missing)."""
    max_gaussians: int = 6_000_000
    max_resolution: int = 4096
    """Longest side of style images, cameras and the render size."""
    max_steps: int = 100_000
    max_views: int = 1024
    max_message_bytes: int = 16 * 1024 * 1024
    """One message, all its frames (protocol 2 moves anything bigger in chunks; a protocol-1 submit of a
    small scene in one message is accepted up to this)."""
    max_upload_bytes: int = 1536 * 1024 * 1024
    """One chunked upload: the arrays of one submit (1.5 GiB: ~6M Gaussians at SH degree 3)."""
    chunk_bytes: int = 8 * 1024 * 1024
    """The most payload one chunk carries; ZMQ_MAXMSGSIZE (one frame) is this plus 1 KiB."""
    max_frames: int = 256
    """Frames one message may declare (checked in its header, the first frame the engine reads)."""
    max_uploads_per_client: int = 2
    """Uploads one client (owner) may have open at once."""
    upload_timeout_s: float = 300.0
    """An upload with no chunk or commit for this long is deleted."""
    max_job_memory_bytes: int | None = None
    """A job whose estimated memory is over this is refused at submit (None: the device's memory)."""
    max_job_seconds: float = 7 * 24 * 3600.0
    """A job whose estimated run time is over this is refused at submit."""
    client_queue_bytes: int = 512 * 1024 * 1024
    """Unread reply bytes one client may hold in the engine before its events are dropped and big replies
    refused with `busy` (a client with nothing pending always gets its reply, however big)."""
    total_queue_bytes: int = 2048 * 1024 * 1024
    """Unread reply bytes all clients together may hold in the engine."""
    inflight_bytes: int | None = None
    """Received submits waiting for the IO threads (decoding, writing) may hold this many bytes; more are
    refused with `busy` (None: 4 x max_message_bytes, at least 8 chunks). Chunks being written and result
    chunks being read count too."""
    guard: bool = True
    """A plain (not CURVE) tcp engine listens through the ZMTP guard (engine.server.guard), which bounds
    every message before libzmq buffers it; its ROUTER binds an ipc socket in <state_dir>/run/."""
    io_threads: int = 2
    """Threads that decode/store submits and load results, so the loop keeps answering everyone."""
    heartbeat_s: float = 2.0
    """Seconds between heartbeats to watching clients."""
    shutdown_timeout_s: float = 120.0
    """How long SIGTERM waits for the running job to reach its checkpoint."""

    def limits(self) -> dict[str, Any]:
        keys = ("max_gaussians", "max_resolution", "max_steps", "max_views", "max_message_bytes")
        keys += ("max_upload_bytes", "chunk_bytes")
        return {k: v for k, v in asdict(self).items() if k in keys}


class LimitError(ValueError):
    code = "limit"


class BusyError(RuntimeError):
    """The engine holds too much for this client (or all clients) right now: retry after reading replies."""

    code = "busy"
