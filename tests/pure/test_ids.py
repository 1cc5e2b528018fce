"""Call IDs and links: generation, and what people paste into the Join field."""

import re

import pytest

from desktop_call.signaling.ids import (
    CALL_ID_ALPHABET,
    CallTarget,
    InvalidCallTarget,
    is_valid_call_id,
    make_call_link,
    new_call_id,
    parse_call_target,
    parse_server_url,
)


def test_alphabet_is_crockford_lower_case():
    assert len(CALL_ID_ALPHABET) == 32
    assert not set("ilou") & set(CALL_ID_ALPHABET)


def test_generated_ids_have_the_contract_shape_and_are_distinct():
    ids = {new_call_id() for _ in range(2000)}
    assert len(ids) == 2000
    for call_id in ids:
        assert re.fullmatch(r"[0-9a-hjkmnp-tv-z]{4}(-[0-9a-hjkmnp-tv-z]{4}){2}", call_id)
        assert is_valid_call_id(call_id)


def test_generated_ids_use_every_symbol_in_every_position():
    # 60 bits spread over 12 symbols: each position sees (nearly) all 32 symbols.
    ids = [new_call_id().replace("-", "") for _ in range(3000)]
    for position in range(12):
        assert len({i[position] for i in ids}) >= 30


@pytest.mark.parametrize(
    ("pasted", "call_id"),
    [
        ("7k3m-q9vd-x2ha", "7k3m-q9vd-x2ha"),
        ("  7K3M-Q9VD-X2HA\n", "7k3m-q9vd-x2ha"),
        ("7k3mq9vdx2ha", "7k3m-q9vd-x2ha"),
        ("7K3M Q9VD X2HA", "7k3m-q9vd-x2ha"),
        ("7k3m - q9vd - x2ha", "7k3m-q9vd-x2ha"),
        ("7k3m-q9vdx2ha", "7k3m-q9vd-x2ha"),
        ("\t7k3m q9vd-x2ha ", "7k3m-q9vd-x2ha"),
        ("team-standup", "team-standup"),
        ("Team Standup", "team-standup"),
        ("abcd", "abcd"),
        ("a" * 64, "a" * 64),
        ("0000", "0000"),
    ],
)
def test_bare_ids_are_normalised(pasted, call_id):
    assert parse_call_target(pasted) == CallTarget(call_id, None)


@pytest.mark.parametrize(
    "pasted",
    [
        "",
        "   ",
        "abc",
        "a" * 65,
        "-abc",
        "ab_cd",
        "7k3m/q9vd",
        "héllo-world",
        "7k3m.q9vd.x2ha",
        "\x00abcd",
    ],
)
def test_malformed_ids_get_a_plain_message(pasted):
    with pytest.raises(InvalidCallTarget) as info:
        parse_call_target(pasted)
    message = str(info.value)
    assert message and "Traceback" not in message
    assert len(message) < 200


@pytest.mark.parametrize(
    ("pasted", "expected"),
    [
        (
            "dcall://127.0.0.1:8787/7k3m-q9vd-x2ha",
            CallTarget("7k3m-q9vd-x2ha", "ws://127.0.0.1:8787"),
        ),
        (
            "  DCALL://Example.COM:9000/7K3MQ9VDX2HA?tls=1 ",
            CallTarget("7k3m-q9vd-x2ha", "wss://example.com:9000"),
        ),
        ("dcall://[::1]:8787/abcd-efgh", CallTarget("abcd-efgh", "ws://[::1]:8787")),
        ("dcall://host/abcd", CallTarget("abcd", "ws://host:8787")),
        ("dcall://host:1/abcd/", CallTarget("abcd", "ws://host:1")),
        ("dcall://host:1/abcd?tls=0", CallTarget("abcd", "ws://host:1")),
        (
            "ws://10.0.0.2:8787/rooms/7k3m-q9vd-x2ha",
            CallTarget("7k3m-q9vd-x2ha", "ws://10.0.0.2:8787"),
        ),
        ("wss://calls.example.org/rooms/abcd", CallTarget("abcd", "wss://calls.example.org:443")),
    ],
)
def test_links_name_their_server(pasted, expected):
    assert parse_call_target(pasted) == expected


@pytest.mark.parametrize(
    "pasted",
    [
        "https://example.com/abcd",
        "dcall://host:8787/",
        "dcall://:8787/abcd",
        "dcall://host:99999/abcd",
        "dcall://host:port/abcd",
        "dcall://host:8787/a/b",
        "dcall://host:8787/ABC",
        "ws://host:8787/abcd",
        "mailto://x/abcd",
    ],
)
def test_malformed_links_get_a_plain_message(pasted):
    with pytest.raises(InvalidCallTarget):
        parse_call_target(pasted)


def test_non_string_input_is_refused():
    with pytest.raises(InvalidCallTarget):
        parse_call_target(None)  # type: ignore[arg-type]


def test_room_url_uses_the_links_server_or_the_default():
    assert CallTarget("abcd").room_url("ws://a:1/") == "ws://a:1/rooms/abcd"
    assert CallTarget("abcd", "wss://b:2").room_url("ws://a:1") == "wss://b:2/rooms/abcd"


@pytest.mark.parametrize(
    ("server", "link"),
    [
        ("ws://127.0.0.1:8787", "dcall://127.0.0.1:8787/7k3m-q9vd-x2ha"),
        ("wss://example.com", "dcall://example.com:443/7k3m-q9vd-x2ha?tls=1"),
        ("192.168.1.20", "dcall://192.168.1.20:8787/7k3m-q9vd-x2ha"),
        ("ws://[::1]:9", "dcall://[::1]:9/7k3m-q9vd-x2ha"),
    ],
)
def test_links_round_trip(server, link):
    made = make_call_link(server, "7k3m-q9vd-x2ha")
    assert made == link
    target = parse_call_target(made)
    assert target.call_id == "7k3m-q9vd-x2ha"
    assert target.server_url == parse_server_url(server)


def test_make_link_refuses_a_bad_id():
    with pytest.raises(InvalidCallTarget):
        make_call_link("ws://a:1", "NOPE")


@pytest.mark.parametrize("server", ["ftp://x", "ws://", "ws://host:notaport", "http://:80"])
def test_bad_server_urls_are_refused(server):
    with pytest.raises(InvalidCallTarget):
        parse_server_url(server)
