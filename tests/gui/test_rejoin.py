"""Saved resume tokens: only a dead run's, only for its room, only while fresh."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings

from desktop_call.ui import rejoin

ROOM = "ws://127.0.0.1:8787/rooms/7k3m-q9vd-x2ha"
OTHER = "ws://127.0.0.1:8787/rooms/aaaa-bbbb-cccc"


@pytest.fixture
def store(tmp_path):
    return QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)


def dead(pid: int) -> bool:
    return False


def test_a_dead_runs_token_is_given_once_for_its_room(store, monkeypatch):
    rejoin.remember(store, ROOM, "tok-1", now=1000.0)
    monkeypatch.setattr(rejoin.os, "getpid", lambda: 424242)  # "a later run"
    assert rejoin.recall(store, OTHER, now=1001.0, running=dead) is None
    assert rejoin.recall(store, ROOM, now=1001.0, running=dead) == "tok-1"
    assert rejoin.recall(store, ROOM, now=1002.0, running=dead) is None  # used up


def test_a_live_runs_token_is_never_taken(store, monkeypatch):
    rejoin.remember(store, ROOM, "tok-1", now=1000.0)
    assert rejoin.recall(store, ROOM, now=1001.0, running=dead) is None  # our own run
    monkeypatch.setattr(rejoin.os, "getpid", lambda: 424242)
    assert rejoin.recall(store, ROOM, now=1001.0, running=lambda pid: True) is None
    assert rejoin.recall(store, ROOM, now=1001.0, running=dead) == "tok-1"


def test_old_tokens_and_a_hang_up_leave_nothing(store, monkeypatch):
    monkeypatch.setattr(rejoin.os, "getpid", lambda: 424242)
    rejoin.remember(store, ROOM, "tok-1", now=1000.0)
    assert rejoin.recall(store, ROOM, now=1000.0 + rejoin.MAX_AGE + 1, running=dead) is None
    rejoin.remember(store, ROOM, "tok-2", now=5000.0)
    rejoin.forget(store, ROOM)
    assert rejoin.recall(store, ROOM, now=5001.0, running=dead) is None
    rejoin.remember(store, ROOM, "tok-3", now=9000.0)
    rejoin.remember(store, OTHER, "tok-4", now=9000.0 + rejoin.MAX_AGE + 1)  # prunes ROOM's
    store.beginGroup(rejoin.GROUP)
    assert len(store.childKeys()) == 1
    store.endGroup()


@pytest.mark.parametrize("value", ["not json", '{"token": "t"}', '["a"]', '{"room": 1}'])
def test_a_damaged_entry_is_ignored_and_removed(store, value):
    store.setValue(rejoin._key(ROOM), value)
    assert rejoin.recall(store, ROOM, running=dead) is None
    assert store.value(rejoin._key(ROOM)) is None
