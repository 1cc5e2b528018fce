"""Signaling wire protocol v1: message types, validation, encoding.

Pure: bytes or str in, typed messages out (and back). No sockets, no event loop.
The contract is ``docs/protocol.md``; every error code and close code lives here.

Decoding is strict where the contract is strict (ill-typed fields, ``null`` for an
optional field, ``NaN``) and tolerant where it costs nothing (unknown extra fields
are ignored, so later protocol versions can add fields to v1 messages).
"""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import orjson

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_NAME_CHARS",
    "PROTOCOL_VERSION",
    "ErrorCode",
    "ErrorMessage",
    "Join",
    "Leave",
    "Peer",
    "PeerJoined",
    "PeerLeft",
    "ProtocolError",
    "RawNumber",
    "Relayed",
    "Signal",
    "Welcome",
    "decode_client",
    "decode_server",
    "dumps",
    "encode",
    "loads",
]

PROTOCOL_VERSION: Final = 1
MAX_FRAME_BYTES: Final = 65_536
MAX_NAME_CHARS: Final = 64


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad-request"
    UNAUTHORIZED = "unauthorized"
    BAD_ROOM = "bad-room"
    ROOM_FULL = "room-full"
    TOO_LARGE = "too-large"
    RATE_LIMITED = "rate-limited"
    VERSION = "version"
    REPLACED = "replaced"
    UNKNOWN_PEER = "unknown-peer"

    @property
    def fatal(self) -> bool:
        return self is not ErrorCode.UNKNOWN_PEER

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code that follows a fatal error (``None`` if not fatal)."""
        return _CLOSE_CODES.get(self)


_CLOSE_CODES: Final = {
    ErrorCode.BAD_REQUEST: 4400,
    ErrorCode.UNAUTHORIZED: 4401,
    ErrorCode.BAD_ROOM: 4404,
    ErrorCode.ROOM_FULL: 4409,
    ErrorCode.TOO_LARGE: 4413,
    ErrorCode.RATE_LIMITED: 4429,
    ErrorCode.VERSION: 4426,
    ErrorCode.REPLACED: 4000,
}


class ProtocolError(Exception):
    """A message that breaks the contract; ``code`` says how (see :class:`ErrorCode`)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_message(self) -> ErrorMessage:
        return ErrorMessage(self.code, self.message)


def _bad(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_REQUEST, message)


# --------------------------------------------------------------------------- JSON


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class RawNumber:
    """An integer literal too long for ``int()`` (Python caps conversions at 4,300 digits
    against quadratic-time attacks), kept as its JSON text so a relay writes it back
    digit for digit. Only absurd data produces one."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RawNumber) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"RawNumber({self.text[:12]}…{len(self.text)} digits)"


_MAX_INT_DIGITS = 4000
_RAW_NONCE = secrets.token_hex(16)  # marks where a RawNumber goes while writing


def _parse_int(text: str) -> int | RawNumber:
    return int(text) if len(text) <= _MAX_INT_DIGITS else RawNumber(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


# orjson reads integers beyond 64 bits as floats, losing digits. A run of 19 digits
# anywhere (even inside a string, like an SDP session id) sends the text to the exact
# standard-library parser instead: rare, and correct either way. Mapping every digit
# to "0" and searching for 19 zeros is ten times faster than a regular expression.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_NINETEEN_ZEROS = b"0" * 19


def _has_long_digit_run(raw: bytes | str) -> bool:
    data = raw.encode(errors="surrogatepass") if isinstance(raw, str) else bytes(raw)
    return data.translate(_DIGITS_TO_ZERO).find(_NINETEEN_ZEROS) >= 0


def loads(raw: bytes | str) -> Any:
    """Parse one JSON text strictly (no NaN/Infinity), keeping big integers exact.

    orjson takes the fast path; what it refuses or would round but JSON allows
    (integers beyond 64 bits, escaped lone surrogates) goes through the standard library.
    """
    if not _has_long_digit_run(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        # Strict UTF-8: json.loads(bytes) would let encoded surrogates through.
        text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8")
        return json.loads(
            text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_parse_int
        )
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise _bad(f"not JSON: {str(exc)[:120]}") from None


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; values orjson cannot write go through the standard library.

    Values come from :func:`loads` (never NaN); a NaN a caller puts in is written as null.
    Raises ``bad-request`` for data nested too deeply to write back (orjson stops at
    254 levels, the standard library near the interpreter's recursion limit).
    """
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        pass
    raw_numbers: list[str] = []

    def placeholder(item: Any) -> str:
        if type(item) is not RawNumber:
            raise TypeError(f"{type(item).__name__} is not JSON")
        raw_numbers.append(item.text)
        return f"{_RAW_NONCE}:{len(raw_numbers) - 1}"

    try:
        text = json.dumps(value, separators=(",", ":"), default=placeholder)
    except RecursionError:
        raise _bad("data is nested too deeply") from None
    for index, digits in enumerate(raw_numbers):
        text = text.replace(f'"{_RAW_NONCE}:{index}"', digits, 1)
    return text.encode()


# ------------------------------------------------------------------ client -> server


@dataclass(frozen=True, slots=True)
class Join:
    name: str
    v: int | RawNumber = PROTOCOL_VERSION
    resume: str | None = None
    token: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "join", "v": self.v, "name": self.name}
        if self.resume is not None:
            out["resume"] = self.resume
        if self.token is not None:
            out["token"] = self.token
        return out


@dataclass(frozen=True, slots=True)
class Signal:
    data: dict[str, Any]
    to: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "signal", "data": self.data}
        if self.to is not None:
            out["to"] = self.to
        return out


@dataclass(frozen=True, slots=True)
class Leave:
    def to_wire(self) -> dict[str, Any]:
        return {"type": "leave"}


ClientMessage = Join | Signal | Leave


def _object(raw: bytes | str) -> dict[str, Any]:
    value = loads(raw)
    if not isinstance(value, dict):
        raise _bad("a message must be a JSON object")
    return value


def _optional_str(msg: dict[str, Any], key: str) -> str | None:
    if key not in msg:
        return None
    value = msg[key]
    if not isinstance(value, str):
        raise _bad(f"'{key}' must be a string")
    return value


def _is_int(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or type(value) is RawNumber


def decode_client(raw: bytes | str) -> ClientMessage:
    """Decode and validate one client frame; :class:`ProtocolError` (bad-request) if malformed.

    The version number is only type-checked here: whether the server speaks it is the
    server's decision, made after this (malformed first, then ``version``).
    """
    msg = _object(raw)
    kind = msg.get("type")
    if kind == "signal":
        data = msg.get("data")
        if not isinstance(data, dict):
            raise _bad("'signal' needs a 'data' object")
        return Signal(data, _optional_str(msg, "to"))
    if kind == "join":
        if "v" not in msg or not _is_int(msg["v"]):
            raise _bad("'join' needs an integer 'v'")
        name = msg.get("name")
        if not isinstance(name, str):
            raise _bad("'join' needs a string 'name'")
        if len(name) > MAX_NAME_CHARS:
            raise _bad(f"'name' is longer than {MAX_NAME_CHARS} characters")
        return Join(name, msg["v"], _optional_str(msg, "resume"), _optional_str(msg, "token"))
    if kind == "leave":
        return Leave()
    if isinstance(kind, str):
        raise _bad(f"unknown message type {kind[:40]!r}")
    raise _bad("a message needs a string 'type'")


# ------------------------------------------------------------------ server -> client


@dataclass(frozen=True, slots=True)
class Peer:
    id: str
    name: str

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


@dataclass(frozen=True, slots=True)
class Welcome:
    id: str
    resume: str
    peers: tuple[Peer, ...]
    capacity: int
    v: int = PROTOCOL_VERSION
    #: Fields a server adds beyond v1 (documented in docs/protocol.md); v1 clients ignore them.
    extra: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {
            **self.extra,
            "type": "welcome",
            "v": self.v,
            "id": self.id,
            "resume": self.resume,
            "peers": [peer.to_wire() for peer in self.peers],
            "capacity": self.capacity,
        }


@dataclass(frozen=True, slots=True)
class PeerJoined:
    peer: Peer

    def to_wire(self) -> dict[str, Any]:
        return {"type": "peer-joined", "peer": self.peer.to_wire()}


@dataclass(frozen=True, slots=True)
class PeerLeft:
    id: str
    reason: str  # "left" | "timeout"

    def to_wire(self) -> dict[str, Any]:
        return {"type": "peer-left", "id": self.id, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Relayed:
    """A ``signal`` as the server delivers it: ``data`` from peer ``sender``, verbatim."""

    sender: str
    data: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        return {"type": "signal", "from": self.sender, "data": self.data}


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    code: ErrorCode
    message: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": "error", "code": str(self.code), "message": self.message}


ServerMessage = Welcome | PeerJoined | PeerLeft | Relayed | ErrorMessage
Message = ClientMessage | ServerMessage


def encode(message: Message) -> bytes:
    """One message as the UTF-8 JSON text of a WebSocket frame."""
    return dumps(message.to_wire())


def _peer(value: Any) -> Peer:
    if not isinstance(value, dict):
        raise _bad("a peer must be an object")
    peer_id, name = value.get("id"), value.get("name")
    if not isinstance(peer_id, str) or not isinstance(name, str):
        raise _bad("a peer needs a string 'id' and 'name'")
    return Peer(peer_id, name)


def decode_server(raw: bytes | str) -> ServerMessage:
    """Decode a server frame (the client's side); :class:`ProtocolError` if malformed.

    An error code this client does not know maps to ``bad-request``, keeping the
    server's message, since every unknown error is fatal by the contract.
    """
    msg = _object(raw)
    kind = msg.get("type")
    try:
        if kind == "signal":
            if not isinstance(msg.get("from"), str) or not isinstance(msg.get("data"), dict):
                raise _bad("'signal' needs a string 'from' and a 'data' object")
            return Relayed(msg["from"], msg["data"])
        if kind == "welcome":
            peers = msg.get("peers")
            if not isinstance(peers, list):
                raise _bad("'welcome' needs a 'peers' list")
            known = {"type", "v", "id", "resume", "peers", "capacity"}
            return Welcome(
                id=_required_str(msg, "id"),
                resume=_required_str(msg, "resume"),
                peers=tuple(_peer(p) for p in peers),
                capacity=int(msg.get("capacity", 2)),
                v=int(msg.get("v", PROTOCOL_VERSION)),
                extra={k: v for k, v in msg.items() if k not in known},
            )
        if kind == "peer-joined":
            return PeerJoined(_peer(msg.get("peer")))
        if kind == "peer-left":
            return PeerLeft(_required_str(msg, "id"), str(msg.get("reason", "left")))
        if kind == "error":
            code_text = _required_str(msg, "code")
            try:
                code = ErrorCode(code_text)
            except ValueError:
                code = ErrorCode.BAD_REQUEST
            return ErrorMessage(code, str(msg.get("message", code_text)))
    except (TypeError, ValueError) as exc:  # int() of an ill-typed capacity or v
        raise _bad(f"ill-typed field in {kind!r}: {exc}") from None
    raise _bad(f"unknown server message type {str(kind)[:40]!r}")


def _required_str(msg: dict[str, Any], key: str) -> str:
    value = msg.get(key)
    if not isinstance(value, str):
        raise _bad(f"'{key}' must be a string")
    return value
