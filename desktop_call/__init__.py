"""desktop-call: peer-to-peer desktop video calls."""

__all__ = ["APP_NAME", "__version__"]

APP_NAME = "desktop-call"
__version__ = "0.1.0"
