"""Call IDs and call links: generation, validation, and normalisation of pasted text.

A call ID is lower-case ``[a-z0-9-]``, 4 to 64 characters, starting with a letter
or digit. Generated IDs are three groups of four Crockford base32 characters
(60 random bits), e.g. ``7k3m-q9vd-x2ha``.

A call link names its server: ``dcall://HOST:PORT/<call-id>`` (``?tls=1`` for
``wss``). People paste IDs and links with stray spaces, in any case, with or
without the dashes; :func:`parse_call_target` accepts all of that and returns
the canonical form, or raises :class:`InvalidCallTarget` with a message that
can be shown as is.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qs, urlsplit

__all__ = [
    "CALL_ID_ALPHABET",
    "DEFAULT_PORT",
    "CallTarget",
    "InvalidCallTarget",
    "is_valid_call_id",
    "make_call_link",
    "new_call_id",
    "parse_call_target",
    "parse_server_url",
]

#: Crockford's base32 alphabet in lower case: digits and letters without i, l, o, u.
CALL_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
DEFAULT_PORT = 8787
LINK_SCHEME = "dcall"

_CALL_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{3,63}")
_GENERATED_COMPACT_RE = re.compile(f"[{CALL_ID_ALPHABET}]{{12}}")
_SEPARATORS_RE = re.compile(r"[\s\-]*\s[\s\-]*")  # a run of spaces (and dashes around them)


class InvalidCallTarget(ValueError):
    """Pasted text that is neither a call ID nor a call link. ``str()`` is user-facing."""


@dataclass(frozen=True, slots=True)
class CallTarget:
    """Where to go: a call ID, and the server named by a link (``None`` for a bare ID)."""

    call_id: str
    server_url: str | None = None  # "ws://host:port" or "wss://host:port"

    def room_url(self, default_server_url: str) -> str:
        """The WebSocket URL of this call's room."""
        base = (self.server_url or default_server_url).rstrip("/")
        return f"{base}/rooms/{self.call_id}"


def new_call_id() -> str:
    """A fresh call ID with 60 bits from the OS CSPRNG, as ``xxxx-xxxx-xxxx``."""
    bits = secrets.randbits(60)
    chars = [CALL_ID_ALPHABET[(bits >> shift) & 31] for shift in range(55, -1, -5)]
    return "-".join("".join(chars[i : i + 4]) for i in (0, 4, 8))


def is_valid_call_id(call_id: str) -> bool:
    """True for an ID the wire protocol accepts in a room path (already normalised)."""
    return _CALL_ID_RE.fullmatch(call_id) is not None


def normalise_call_id(text: str) -> str:
    """Canonical call ID from pasted text, or :class:`InvalidCallTarget`."""
    cleaned = _SEPARATORS_RE.sub("-", text.strip()).lower()
    compact = cleaned.replace("-", "")
    if _GENERATED_COMPACT_RE.fullmatch(compact):
        # A generated ID, typed or pasted with its dashes lost or moved.
        return f"{compact[0:4]}-{compact[4:8]}-{compact[8:12]}"
    if not cleaned:
        raise InvalidCallTarget("Paste a call ID or a call link.")
    if not is_valid_call_id(cleaned):
        raise InvalidCallTarget(
            f"“{_shorten(text.strip())}” is not a call ID: use 4 to 64 letters, digits "
            "and dashes (like 7k3m-q9vd-x2ha), or paste a dcall:// link."
        )
    return cleaned


def parse_server_url(text: str) -> str:
    """Normalise a room server address to ``ws://host:port`` / ``wss://host:port``.

    Accepts ``ws://``, ``wss://``, ``http://``, ``https://`` and a bare ``host[:port]``.
    """
    raw = text.strip()
    if "://" not in raw:
        raw = f"ws://{raw}"
    parts = urlsplit(raw)
    scheme = {"ws": "ws", "http": "ws", "wss": "wss", "https": "wss"}.get(parts.scheme.lower())
    if scheme is None:
        raise InvalidCallTarget(f"“{_shorten(text)}” is not a server address (ws:// or wss://).")
    # A deployed server behind TLS listens on 443; anything else defaults to ours.
    default_port = 443 if parts.scheme.lower() in {"wss", "https"} else DEFAULT_PORT
    return _format_server(scheme, parts, text, default_port)


def parse_call_target(text: str) -> CallTarget:
    """Parse what a person pasted into the Join field: an ID or a link.

    Links: ``dcall://HOST:PORT/ID[?tls=1]``; also the room's WebSocket URL
    (``ws[s]://HOST:PORT/rooms/ID``), which people copy from logs.
    """
    if not isinstance(text, str):
        raise InvalidCallTarget("Paste a call ID or a call link.")
    stripped = text.strip()
    if "://" not in stripped:
        return CallTarget(normalise_call_id(stripped))

    parts = urlsplit(stripped)
    scheme = parts.scheme.lower()
    path = parts.path.strip("/")
    if scheme == LINK_SCHEME:
        query = parse_qs(parts.query)
        tls = query.get("tls", ["0"])[-1].strip().lower() in {"1", "true", "yes"}
        server = _format_server("wss" if tls else "ws", parts, text)
    elif scheme in {"ws", "wss"}:
        if not path.startswith("rooms/"):
            raise InvalidCallTarget(f"“{_shorten(stripped)}” is not a room address (…/rooms/ID).")
        path = path.removeprefix("rooms/")
        server = _format_server(scheme, parts, text, 443 if scheme == "wss" else DEFAULT_PORT)
    else:
        raise InvalidCallTarget(
            f"“{_shorten(stripped)}” is not a call link: links start with {LINK_SCHEME}://."
        )
    if not path or "/" in path:
        raise InvalidCallTarget(f"The link “{_shorten(stripped)}” has no call ID in it.")
    return CallTarget(normalise_call_id(path), server)


def make_call_link(server_url: str, call_id: str) -> str:
    """``dcall://HOST:PORT/ID`` (``?tls=1`` for a ``wss`` server) for a normalised ID."""
    if not is_valid_call_id(call_id):
        raise InvalidCallTarget(f"“{_shorten(call_id)}” is not a call ID.")
    server = parse_server_url(server_url)
    scheme, _, hostport = server.partition("://")
    suffix = "?tls=1" if scheme == "wss" else ""
    return f"{LINK_SCHEME}://{hostport}/{call_id}{suffix}"


def _format_server(
    scheme: str, parts: SplitResult, original: str, default_port: int = DEFAULT_PORT
) -> str:
    try:
        host = parts.hostname
        port = parts.port
    except ValueError as exc:  # port out of range or not a number
        raise InvalidCallTarget(f"“{_shorten(original)}” has a bad port: {exc}.") from None
    if not host:
        raise InvalidCallTarget(f"“{_shorten(original)}” names no server.")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or default_port}"


def _shorten(text: str, limit: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
