"""The engine server: ZeroMQ ROUTER in front of a persistent job store and its workers (one per device).

from engine.server import EngineServer, ServerConfig
EngineServer(ServerConfig(address="tcp://127.0.0.1:5557", state_dir="state")).serve_forever()
"""

from .runners import RUNNERS, JobRunner, StylizeRunner, SyntheticRunner
from .security import SecurityError, generate_keys, is_loopback
from .server import DEFAULT_ADDRESS, DEFAULT_STATE_DIR, EngineServer, ServerConfig, serve
from .store import JobStore

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_STATE_DIR",
    "RUNNERS",
    "EngineServer",
    "JobRunner",
    "JobStore",
    "SecurityError",
    "ServerConfig",
    "StylizeRunner",
    "SyntheticRunner",
    "generate_keys",
    "is_loopback",
    "serve",
]
