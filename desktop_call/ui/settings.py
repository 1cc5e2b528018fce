"""The app's settings: a validated dataclass, persisted with QSettings.

Every value read back is checked; a bad one (a hand-edited config file, a value
from an older version) falls back to its default and is reported in
``Settings.problems`` so the app can say so once, and nothing else changes.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from PySide6.QtCore import QSettings

from desktop_call.call.ice import IceConfig, InvalidIceConfig, parse_ice_servers
from desktop_call.signaling.ids import (
    DEFAULT_PORT,
    InvalidCallTarget,
    parse_call_target,
    parse_server_url,
)
from desktop_call.signaling.protocol import MAX_NAME_CHARS

__all__ = ["RecentCall", "Settings", "load_settings", "save_settings"]

SERVER_MODES = ("embedded", "remote")
CODECS = ("auto", "VP8", "H264")
RESOLUTIONS = ("640x480", "1280x720", "1920x1080")
MAX_RECENT = 10


@dataclass(frozen=True, slots=True)
class RecentCall:
    link: str
    joined_at: float


def _default_name() -> str:
    try:
        return getpass.getuser()[:MAX_NAME_CHARS]
    except Exception:  # no user name in this environment
        return ""


@dataclass(frozen=True)
class Settings:
    display_name: str = field(default_factory=_default_name)
    server_mode: str = "embedded"  # "embedded": this computer hosts the room server
    embedded_host: str = "0.0.0.0"  # reachable on the LAN
    embedded_port: int = DEFAULT_PORT
    remote_server_url: str = ""
    server_token: str = ""
    ice_servers: str = "default"
    turn_username: str = ""
    turn_credential: str = ""
    relay_only: bool = False
    video_codec: str = "auto"
    resolution: str = "640x480"
    camera_id: str = ""  # "" = the system default
    microphone_id: str = ""
    speaker_id: str = ""
    echo_cancellation: bool = True
    recent_calls: tuple[RecentCall, ...] = ()
    #: Messages about values that were refused on load (not persisted).
    problems: tuple[str, ...] = field(default=(), compare=False)

    # ------------------------------------------------------------- derived

    def ice_config(self) -> IceConfig:
        servers = parse_ice_servers(
            self.ice_servers,
            username=self.turn_username or None,
            credential=self.turn_credential or None,
        )
        return IceConfig(servers=servers, relay_only=self.relay_only)

    def server_url(self, embedded_url: str | None = None) -> str:
        """The room server a bare call ID goes to."""
        if self.server_mode == "remote":
            return parse_server_url(self.remote_server_url)
        if embedded_url is None:
            raise ValueError("the embedded server is not running")
        return embedded_url

    def with_recent(self, link: str, now: float | None = None) -> Settings:
        now = time.time() if now is None else now
        kept = [r for r in self.recent_calls if r.link != link]
        return replace(self, recent_calls=(RecentCall(link, now), *kept)[:MAX_RECENT])

    def validated(self) -> Settings:
        """A copy where every refused value is back to its default, with the reasons."""
        defaults = Settings()
        values: dict[str, Any] = {}
        problems: list[str] = list(self.problems)
        for item in fields(self):
            if item.name == "problems":
                continue
            value = getattr(self, item.name)
            reason = _check(item.name, value)
            if reason:
                problems.append(f"{_label(item.name)}: {reason}; using the default.")
                value = getattr(defaults, item.name)
            values[item.name] = value
        candidate = Settings(**values, problems=tuple(problems))
        try:
            candidate.ice_config()
        except (InvalidIceConfig, ValueError) as exc:
            candidate = replace(
                candidate,
                ice_servers="default",
                relay_only=False,
                problems=(*candidate.problems, f"STUN/TURN: {exc} Using the default."),
            )
        return candidate


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _check(name: str, value: Any) -> str | None:
    """Why a value cannot be used, or None."""
    expected = {f.name: f.type for f in fields(Settings)}
    if name in ("relay_only", "echo_cancellation"):
        return None if isinstance(value, bool) else "not true or false"
    if name == "embedded_port":
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535
        return None if ok else "not a port number"
    if name == "recent_calls":
        return None if isinstance(value, tuple) else "not a list of calls"
    if "str" in str(expected.get(name)) and not isinstance(value, str):
        return "not text"
    if name == "display_name" and len(value) > MAX_NAME_CHARS:
        return f"longer than {MAX_NAME_CHARS} characters"
    if name == "server_mode" and value not in SERVER_MODES:
        return "neither 'embedded' nor 'remote'"
    if name == "video_codec" and value not in CODECS:
        return f"not one of {', '.join(CODECS)}"
    if name == "resolution" and value not in RESOLUTIONS:
        return f"not one of {', '.join(RESOLUTIONS)}"
    if name == "remote_server_url" and value:
        try:
            parse_server_url(value)
        except InvalidCallTarget as exc:
            return str(exc)
    return None


# ------------------------------------------------------------------ QSettings


def _read(store: QSettings, key: str, default: Any) -> Any:
    raw = store.value(key, default)
    if isinstance(default, bool) and isinstance(raw, str):  # INI files store text
        return {"true": True, "false": False}.get(raw.lower(), raw)
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(raw, str):
        try:
            return int(raw)
        except ValueError:
            return raw
    return raw


def load_settings(store: QSettings) -> Settings:
    """Read and validate; never raises for bad stored values."""
    defaults = Settings()
    values: dict[str, Any] = {}
    problems: list[str] = []
    for item in fields(Settings):
        if item.name in ("problems", "recent_calls"):
            continue
        values[item.name] = _read(store, item.name, getattr(defaults, item.name))
    recent: list[RecentCall] = []
    size = store.beginReadArray("recent_calls")
    for index in range(min(size, MAX_RECENT)):
        store.setArrayIndex(index)
        link, joined_at = store.value("link", ""), store.value("joined_at", 0)
        try:
            parse_call_target(str(link))
            recent.append(RecentCall(str(link), float(joined_at)))
        except (InvalidCallTarget, TypeError, ValueError):
            problems.append("A recent call could not be read and was left out.")
    store.endArray()
    values["recent_calls"] = tuple(recent)
    return Settings(**values, problems=tuple(problems)).validated()


def save_settings(store: QSettings, settings: Settings) -> None:
    data = asdict(settings)
    data.pop("problems")
    recent = data.pop("recent_calls")
    for key, value in data.items():
        store.setValue(key, value)
    store.beginWriteArray("recent_calls", len(recent))
    for index, call in enumerate(recent):
        store.setArrayIndex(index)
        store.setValue("link", call["link"])
        store.setValue("joined_at", call["joined_at"])
    store.endArray()
    store.sync()
