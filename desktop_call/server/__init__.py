"""The room server: relays signaling between the peers of each call (protocol v1).

Imports only :mod:`desktop_call.signaling`, ``websockets`` and the standard library.
"""

from .app import RoomServer, ServerConfig
from .rooms import Registry, RegistryConfig

__all__ = ["Registry", "RegistryConfig", "RoomServer", "ServerConfig"]
