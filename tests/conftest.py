"""Shared test configuration: a session-wide, quiet setup for every tier."""

import logging

# The server logs one JSON line per join/leave/error; keep test output readable.
logging.getLogger("desktop_call.server").setLevel(logging.WARNING)
