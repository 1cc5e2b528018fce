"""Taking a call back after the app crashed or was killed.

When an app dies without hanging up, the room server keeps its place for a grace period
(30 s by default, protocol v1), and a room of two is full meanwhile: the restarted app
would be told "room full" by its own ghost. So the app saves the resume token of every
welcome, and a call started again in the same room presents it: the server gives the
place back, the other side sees nobody leave, and the new run connects at once.

A token is only used when the run that saved it is gone (its process id no longer
runs): two instances of the app on one computer share their settings, and one joining
the other's call must not take the other's place. A clean hang-up forgets the token;
an expired one is harmless (the server treats it as a plain join).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable

from PySide6.QtCore import QSettings

__all__ = ["forget", "recall", "remember"]

GROUP = "rejoin"
#: Longer than any server's grace period needs: past it the token is useless anyway.
MAX_AGE = 600.0


def _key(room_url: str) -> str:
    return f"{GROUP}/{hashlib.sha256(room_url.encode()).hexdigest()[:16]}"


def remember(store: QSettings, room_url: str, token: str, *, now: float | None = None) -> None:
    """Save ``token`` for ``room_url``, owned by this process."""
    entry = {"room": room_url, "token": token, "pid": os.getpid(), "at": now or time.time()}
    store.setValue(_key(room_url), json.dumps(entry))
    _prune(store, now or time.time())
    store.sync()  # on disk now: a crash is exactly when it is needed


def recall(
    store: QSettings,
    room_url: str,
    *,
    now: float | None = None,
    running: Callable[[int], bool] | None = None,
) -> str | None:
    """The token a dead earlier run saved for ``room_url``, if any (then forgotten)."""
    running = running or _running
    try:
        entry = json.loads(str(store.value(_key(room_url), "") or ""))
        token, pid, at = str(entry["token"]), int(entry["pid"]), float(entry["at"])
        room = str(entry["room"])
    except (ValueError, KeyError, TypeError):
        store.remove(_key(room_url))  # unreadable: as good as none
        return None
    if room != room_url or not token or (now or time.time()) - at > MAX_AGE:
        store.remove(_key(room_url))
        return None
    if pid == os.getpid() or running(pid):
        return None  # that run is alive (another window, another instance): its place
    store.remove(_key(room_url))
    return token


def forget(store: QSettings, room_url: str) -> None:
    store.remove(_key(room_url))


def _prune(store: QSettings, now: float) -> None:
    store.beginGroup(GROUP)
    try:
        stale = []
        for key in store.childKeys():
            try:
                if now - float(json.loads(str(store.value(key)))["at"]) > MAX_AGE:
                    stale.append(key)
            except (ValueError, KeyError, TypeError):
                stale.append(key)
        for key in stale:
            store.remove(key)
    finally:
        store.endGroup()


def _running(pid: int) -> bool:
    if pid <= 0:
        return False
    if sys.platform == "win32":
        # os.kill(pid, 0) would terminate it there: assume alive (no rejoin on Windows).
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    except OSError:
        return False
    return True
