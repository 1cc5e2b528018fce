"""The room server's pure parts for issue 7: per-address limits and TURN REST credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from desktop_call.server import ServerConfig
from desktop_call.server.limits import (
    MAX_PENDING_REFUSALS,
    ConnectionLimiter,
    Outcome,
    address_key,
    parse_networks,
)
from desktop_call.server.turn import TurnRest, check_ice_url, turn_credential

# ----------------------------------------------------------------- per-address limits


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),  # IPv4-mapped: the IPv4 address
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),  # IPv6: the /64
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("", None),
        ("not-an-ip", None),
    ],
)
def test_address_keys(ip: str, key: str | None) -> None:
    assert address_key(ip) == key


def test_open_connections_are_limited_per_address_and_freed_on_release() -> None:
    limiter = ConnectionLimiter(max_open=2, rate=0, burst=0)
    a1, a2 = limiter.admit("198.51.100.1", 0), limiter.admit("198.51.100.1", 0)
    assert a1.outcome is a2.outcome is Outcome.ACCEPT
    third = limiter.admit("198.51.100.1", 0)
    assert third.outcome is Outcome.TOO_MANY
    assert limiter.admit("198.51.100.2", 0).outcome is Outcome.ACCEPT  # another address
    limiter.release(third, 0)
    assert limiter.admit("198.51.100.1", 0).outcome is Outcome.TOO_MANY  # a refusal frees none
    limiter.release(a1, 0)
    assert limiter.admit("198.51.100.1", 0).outcome is Outcome.ACCEPT
    assert limiter.refused == 2


def test_one_ipv6_subscriber_cannot_escape_the_limit_by_changing_addresses() -> None:
    limiter = ConnectionLimiter(max_open=3, rate=0, burst=0)
    outcomes = [limiter.admit(f"2001:db8:5:6::{n:x}", 0).outcome for n in range(1, 5)]
    assert outcomes == [Outcome.ACCEPT] * 3 + [Outcome.TOO_MANY]
    assert limiter.admit("2001:db8:5:7::1", 0).outcome is Outcome.ACCEPT  # the next /64


def test_new_connections_are_rate_limited_with_a_burst() -> None:
    limiter = ConnectionLimiter(max_open=0, rate=2.0, burst=3)
    admissions = [limiter.admit("192.0.2.9", 0.0) for _ in range(4)]
    assert [a.outcome for a in admissions] == [Outcome.ACCEPT] * 3 + [Outcome.TOO_FAST]
    for admission in admissions:  # closing does not give tokens back
        limiter.release(admission, 0.1)
    assert limiter.admit("192.0.2.9", 0.2).outcome is Outcome.TOO_FAST  # 0.4 tokens
    assert limiter.admit("192.0.2.9", 0.5).outcome is Outcome.ACCEPT  # 1.0 token at 0.5 s


def test_pending_refusals_per_address_are_bounded_then_cut() -> None:
    limiter = ConnectionLimiter(max_open=1, rate=0, burst=0)
    limiter.admit("192.0.2.1", 0)
    refused = [limiter.admit("192.0.2.1", 0) for _ in range(MAX_PENDING_REFUSALS)]
    assert {a.outcome for a in refused} == {Outcome.TOO_MANY}
    cut = limiter.admit("192.0.2.1", 0)
    assert cut.outcome is Outcome.CUT
    limiter.release(cut, 0)  # nothing was counted for it
    limiter.release(refused[0], 0)
    assert limiter.admit("192.0.2.1", 0).outcome is Outcome.TOO_MANY  # room for one refusal


def test_refusals_are_reported_for_logging_at_most_every_ten_seconds() -> None:
    limiter = ConnectionLimiter(max_open=0, rate=1.0, burst=1)
    limiter.admit("192.0.2.3", 0.0)
    reports = [limiter.admit("192.0.2.3", t).report for t in (0.1, 0.2, 0.3)]
    assert reports == [1, 0, 0]
    assert limiter.admit("192.0.2.3", 10.2).report == 0  # accepted: a token again
    assert limiter.admit("192.0.2.3", 10.3).report == 3  # the two since, plus this one


def test_exempt_networks_and_disabled_limits_track_nothing() -> None:
    exempt = ConnectionLimiter(1, 1.0, 1, parse_networks(("127.0.0.0/8", "::1")))
    for ip in ("127.0.0.1", "127.0.0.1", "::1", "::ffff:127.0.0.5"):
        admission = exempt.admit(ip, 0)
        assert admission.outcome is Outcome.ACCEPT and admission.key is None
    assert exempt.admit("192.0.2.1", 0).outcome is Outcome.ACCEPT
    assert exempt.admit("192.0.2.1", 0).outcome is Outcome.TOO_FAST
    off = ConnectionLimiter(0, 0, 0)
    assert not off.enabled
    assert all(off.admit("192.0.2.1", 0).outcome is Outcome.ACCEPT for _ in range(500))
    assert off.tracked == 0


def test_idle_addresses_are_forgotten() -> None:
    limiter = ConnectionLimiter(max_open=5, rate=10.0, burst=10)
    admissions = [limiter.admit(f"192.0.2.{n}", 0.0) for n in range(1, 101)]
    assert limiter.tracked == 100
    for admission in admissions:
        limiter.release(admission, 0.0)  # bucket not full yet: remembered
    assert limiter.tracked == 100
    limiter.sweep(1.0)  # 0.1 s refills the one token taken
    assert limiter.tracked == 0
    only = ConnectionLimiter(max_open=5, rate=0, burst=0)
    only.release(only.admit("192.0.2.1", 0), 0)  # no bucket: forgotten at once
    assert only.tracked == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_connections_per_ip": -1}, "cannot be negative"),
        ({"connection_rate_per_ip": -1.0}, "must be a number >= 0"),
        ({"connection_rate_per_ip": float("nan")}, "must be a number >= 0"),
        ({"connection_burst_per_ip": 0}, "burst per IP must be at least 1"),
        ({"limit_exempt": ("10.0.0.0/33",)}, "is not an IP network"),
        ({"turn_urls": ("turn:t.example:3478",)}, "needs a TURN secret"),
        ({"turn_secret": "s"}, "at least one --turn-url"),
        ({"turn_secret": "", "turn_urls": ("turn:t.example",)}, "secret is empty"),
        ({"turn_secret": " s ", "turn_urls": ("turn:t.example",)}, "whitespace"),
        ({"turn_secret": "s", "turn_urls": ("stun:t.example",)}, "no turn: or turns: URL"),
        ({"turn_secret": "s", "turn_urls": ("turn:t.example",), "turn_ttl": 0}, "positive"),
        ({"turn_secret": "s", "turn_urls": ("http://t.example",)}, "not a STUN/TURN URL"),
    ],
)
def test_server_config_refuses_settings_that_cannot_work(overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        ServerConfig(**overrides)


def test_defaults_limit_every_address_and_issue_no_turn() -> None:
    config = ServerConfig()
    assert config.max_connections_per_ip == 100 and config.connection_rate_per_ip == 20
    assert config.limit_exempt == () and config.turn_rest is None
    assert "secret-value" not in repr(
        ServerConfig(turn_secret="secret-value", turn_urls=("turn:t.example",))
    )


# ------------------------------------------------------------------ TURN REST credentials


@pytest.mark.parametrize(
    "url",
    [
        "turn:turn.example.org",
        "turn:turn.example.org:3478?transport=udp",
        "turn:turn.example.org:443?transport=tcp",
        "turns:turn.example.org:5349?transport=tcp",
        "turns:turn.example.org",
        "stun:turn.example.org:3478",
        "stuns:turn.example.org",
        "turn:192.0.2.10:3478",
        "turn:[2001:db8::10]:3478?transport=udp",
    ],
)
def test_valid_ice_urls(url: str) -> None:
    assert check_ice_url(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://turn.example.org", "not a STUN/TURN URL"),
        ("turn://turn.example.org", "not a STUN/TURN URL"),
        ("turn:", "not a STUN/TURN URL"),
        ("turn:user@turn.example.org", "not a STUN/TURN URL"),
        ("turn:turn.example.org:0", "not a port number"),
        ("turn:turn.example.org:65536", "not a port number"),
        ("turn:turn.example.org?transport=sctp", "udp or tcp"),
        ("stun:turn.example.org?transport=udp", r"takes no \?transport"),
        ("turn:[2001:db8:::1]", "not an IPv6 address"),
        ("turn:turn.example.org:3478/path", "not a STUN/TURN URL"),
        (" turn:turn.example.org", "not a STUN/TURN URL"),
    ],
)
def test_invalid_ice_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_ice_url(url)


def test_credential_is_coturns_rest_password() -> None:
    # An independent computation of base64(HMAC-SHA1(secret, username)).
    username = "1700000000:peer"
    expected = base64.b64encode(
        hmac.new(b"north-wind", username.encode(), hashlib.sha1).digest()
    ).decode()
    assert turn_credential("north-wind", username) == expected
    assert turn_credential("north-wind", "1700000001:peer") != expected


def test_ice_servers_split_stun_from_turn_and_expire_after_the_ttl() -> None:
    rest = TurnRest(
        "north-wind",
        ("stun:t.example:3478", "turn:t.example:3478?transport=udp", "turns:t.example:5349"),
        ttl=600,
    )
    stun, turn = rest.ice_servers("peer-1", now=1_700_000_000.7)
    assert stun == {"urls": ["stun:t.example:3478"]}
    assert turn["urls"] == ["turn:t.example:3478?transport=udp", "turns:t.example:5349"]
    assert turn["username"] == "1700000600:peer-1"
    assert turn["credential"] == turn_credential("north-wind", "1700000600:peer-1")
    assert rest.ice_servers("peer-1", now=1_700_000_100)[1]["username"] == "1700000700:peer-1"
    (only_turn,) = TurnRest("k", ("turn:t.example",)).ice_servers("p", now=0)
    assert only_turn["username"] == "43200:p"  # the default lifetime: 12 h
