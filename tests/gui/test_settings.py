"""Settings: persisted with QSettings, every bad stored value refused on its own."""

import pytest

from desktop_call.ui.settings import RecentCall, Settings, load_settings, save_settings


def test_round_trip(settings_store):
    settings = Settings(
        display_name="Ana",
        server_mode="remote",
        remote_server_url="wss://calls.example.org",
        server_token="t0k",
        ice_servers="stun:stun.example.org:3478",
        video_codec="H264",
        resolution="1280x720",
        camera_id="cam-1",
        relay_only=False,
        echo_cancellation=False,
        embedded_port=9000,
    ).with_recent("dcall://127.0.0.1:8787/7k3m-q9vd-x2ha", now=100.0)
    save_settings(settings_store, settings)
    loaded = load_settings(settings_store)
    assert loaded == settings
    assert loaded.problems == ()


def test_defaults_when_nothing_is_stored(settings_store):
    loaded = load_settings(settings_store)
    assert loaded == Settings()
    assert loaded.server_mode == "embedded"
    assert loaded.problems == ()


@pytest.mark.parametrize(
    ("key", "value", "field", "default"),
    [
        ("server_mode", "cloud", "server_mode", "embedded"),
        ("embedded_port", "99999", "embedded_port", 8787),
        ("embedded_port", "eighty", "embedded_port", 8787),
        ("video_codec", "AV1", "video_codec", "auto"),
        ("resolution", "huge", "resolution", "640x480"),
        ("relay_only", "maybe", "relay_only", False),
        ("display_name", "x" * 65, "display_name", Settings().display_name),
        ("remote_server_url", "ftp://nope", "remote_server_url", ""),
        ("ice_servers", "http://not-stun", "ice_servers", "default"),
    ],
)
def test_a_bad_stored_value_falls_back_alone_and_is_reported(
    settings_store, key, value, field, default
):
    save_settings(settings_store, Settings(display_name="Ana", video_codec="VP8"))
    settings_store.setValue(key, value)
    loaded = load_settings(settings_store)
    assert getattr(loaded, field) == default
    assert len(loaded.problems) == 1
    # Nothing else changed.
    if field != "display_name":
        assert loaded.display_name == "Ana"
    if field != "video_codec":
        assert loaded.video_codec == "VP8"


def test_relay_only_without_a_turn_server_of_ones_own_is_kept(settings_store):
    # The room server may hand one out; the call says why if it does not.
    save_settings(settings_store, Settings(ice_servers="stun:a.example:3478"))
    settings_store.setValue("relay_only", True)
    loaded = load_settings(settings_store)
    assert loaded.relay_only is True
    assert loaded.problems == ()
    assert "TURN" in loaded.ice_config().relay_problem(())


def test_unreadable_recent_calls_are_left_out(settings_store):
    save_settings(settings_store, Settings().with_recent("dcall://h:1/abcd", now=1.0))
    settings_store.beginWriteArray("recent_calls", 2)
    settings_store.setArrayIndex(1)
    settings_store.setValue("link", "not a link!")
    settings_store.setValue("joined_at", 2.0)
    settings_store.endArray()
    loaded = load_settings(settings_store)
    assert loaded.recent_calls == (RecentCall("dcall://h:1/abcd", 1.0),)
    assert loaded.problems


def test_recent_calls_are_most_recent_first_without_duplicates():
    settings = Settings()
    for n, link in enumerate(["dcall://h:1/aaaa", "dcall://h:1/bbbb", "dcall://h:1/aaaa"]):
        settings = settings.with_recent(link, now=float(n))
    assert [r.link for r in settings.recent_calls] == ["dcall://h:1/aaaa", "dcall://h:1/bbbb"]


def test_server_url_follows_the_mode():
    assert Settings().server_url("ws://127.0.0.1:8787") == "ws://127.0.0.1:8787"
    remote = Settings(server_mode="remote", remote_server_url="calls.example.org:9000")
    assert remote.server_url() == "ws://calls.example.org:9000"
