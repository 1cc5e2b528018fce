"""Wire protocol v1: decoding with the exact error codes, encoding, verbatim data."""

import json

import pytest

from desktop_call.signaling.protocol import (
    MAX_NAME_CHARS,
    ErrorCode,
    ErrorMessage,
    Join,
    Leave,
    Peer,
    PeerJoined,
    PeerLeft,
    ProtocolError,
    Relayed,
    Signal,
    Welcome,
    decode_client,
    decode_server,
    dumps,
    encode,
    loads,
)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"type":"join","v":1,"name":"Ana"}', Join("Ana")),
        ('{"type":"join","v":1,"name":""}', Join("")),
        ('{"type":"join","v":7,"name":"x"}', Join("x", v=7)),  # version is the server's call
        ('{"type":"join","v":1,"name":"x","resume":"r","token":"t"}', Join("x", 1, "r", "t")),
        ('{"type":"join","v":1,"name":"x","future":true}', Join("x")),  # extra fields ignored
        ('{"type":"signal","data":{}}', Signal({})),
        ('{"type":"signal","to":"p1","data":{"a":[1,2]}}', Signal({"a": [1, 2]}, "p1")),
        ('{"type":"leave"}', Leave()),
        (b'{"type":"leave"}', Leave()),
    ],
)
def test_valid_client_messages(raw, message):
    assert decode_client(raw) == message


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "not json",
        "[]",
        '"join"',
        "null",
        "{}",
        '{"type":1}',
        '{"type":"dance"}',
        '{"type":"join","name":"x"}',  # no v
        '{"type":"join","v":"1","name":"x"}',
        '{"type":"join","v":true,"name":"x"}',
        '{"type":"join","v":1.0,"name":"x"}',
        '{"type":"join","v":1}',  # no name
        '{"type":"join","v":1,"name":null}',
        '{"type":"join","v":1,"name":"x","resume":null}',
        '{"type":"join","v":1,"name":"x","resume":5}',
        '{"type":"join","v":1,"name":"x","token":[]}',
        '{"type":"signal"}',
        '{"type":"signal","data":[]}',
        '{"type":"signal","data":"x"}',
        '{"type":"signal","data":null}',
        '{"type":"signal","to":null,"data":{}}',
        '{"type":"signal","to":3,"data":{}}',
        '{"type":"signal","data":{"x":NaN}}',
        '{"type":"signal","data":{"x":Infinity}}',
        '{"type":"signal","data":{"x":-Infinity}}',
        '{"type":"signal","data":{"x":1e999}}',
        '{"type":"leave"} trailing',
        b'{"type":"leave","x":"\xff"}',  # invalid UTF-8
        "[" * 100_000,  # deep nesting
    ],
)
def test_malformed_client_messages_are_bad_requests(raw):
    with pytest.raises(ProtocolError) as info:
        decode_client(raw)
    assert info.value.code is ErrorCode.BAD_REQUEST
    assert info.value.message


def test_name_limit_counts_code_points_not_bytes():
    astral = "\U0001f600"  # 4 bytes in UTF-8
    assert decode_client(json.dumps({"type": "join", "v": 1, "name": astral * MAX_NAME_CHARS}))
    with pytest.raises(ProtocolError):
        decode_client(json.dumps({"type": "join", "v": 1, "name": "a" * (MAX_NAME_CHARS + 1)}))


@pytest.mark.parametrize(
    "data",
    [
        {"big": 2**200, "neg": -(2**70)},
        {"s": "\U0001f600 é \u0000 \u2028"},
        {"nested": {"a": [1, {"b": [None, True, False, 1.5, -0.25, 1e300]}]}},
        {"description": {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}},
    ],
)
def test_relayed_data_is_the_same_json_value(data):
    raw = json.dumps({"type": "signal", "data": data})
    message = decode_client(raw)
    out = json.loads(encode(Relayed("p", message.data)))
    assert out == {"type": "signal", "from": "p", "data": data}


def test_lone_surrogates_survive_a_relay():
    raw = '{"type":"signal","data":{"s":"\\ud800x"}}'
    message = decode_client(raw)
    assert message.data == {"s": "\ud800x"}
    assert json.loads(encode(Relayed("p", message.data)))["data"]["s"] == "\ud800x"


def test_big_integers_keep_every_digit_on_the_wire():
    digits = "1234567890123456789012345678901234567890"
    message = decode_client('{"type":"signal","data":{"n":' + digits + "}}")
    assert digits.encode() in encode(Relayed("p", message.data))
    assert message.data["n"] == int(digits)


@pytest.mark.parametrize("raw", ["NaN", "[Infinity]", '{"a":-Infinity}', "1e400", b"[1e400]"])
def test_loads_refuses_non_json_numbers(raw):
    with pytest.raises(ProtocolError):
        loads(raw)


def test_dumps_writes_what_orjson_cannot():
    assert dumps({"n": 2**64, "s": "\ud800"}) == b'{"n":18446744073709551616,"s":"\\ud800"}'


def test_error_codes_and_close_codes_follow_the_contract():
    table = {
        "bad-request": 4400,
        "unauthorized": 4401,
        "bad-room": 4404,
        "room-full": 4409,
        "too-large": 4413,
        "rate-limited": 4429,
        "version": 4426,
        "replaced": 4000,
    }
    for code, close in table.items():
        assert ErrorCode(code).fatal
        assert ErrorCode(code).close_code == close
    assert not ErrorCode.UNKNOWN_PEER.fatal
    assert ErrorCode.UNKNOWN_PEER.close_code is None


@pytest.mark.parametrize(
    "message",
    [
        Welcome("a", "r", (Peer("b", "Bo"),), 2),
        Welcome("a", "r", (), 3, extra={"ice_servers": [{"urls": "stun:x"}]}),
        PeerJoined(Peer("b", "")),
        PeerLeft("b", "timeout"),
        Relayed("b", {"candidate": None}),
        ErrorMessage(ErrorCode.ROOM_FULL, "full"),
    ],
)
def test_server_messages_round_trip(message):
    assert decode_server(encode(message)) == message


def test_client_messages_encode_to_the_wire_shape():
    assert json.loads(encode(Join("x", resume="r"))) == {
        "type": "join",
        "v": 1,
        "name": "x",
        "resume": "r",
    }
    assert json.loads(encode(Signal({"a": 1}, to="p"))) == {
        "type": "signal",
        "to": "p",
        "data": {"a": 1},
    }
    assert json.loads(encode(Leave())) == {"type": "leave"}


@pytest.mark.parametrize(
    "raw",
    [
        "garbage",
        '{"type":"welcome"}',
        '{"type":"welcome","id":"a","resume":"r","peers":{}}',
        '{"type":"welcome","id":"a","resume":"r","peers":[],"capacity":"x"}',
        '{"type":"signal","from":1,"data":{}}',
        '{"type":"peer-joined","peer":"x"}',
        '{"type":"peer-left"}',
        '{"type":"error"}',
        '{"type":"mystery"}',
    ],
)
def test_malformed_server_messages_are_refused(raw):
    with pytest.raises(ProtocolError):
        decode_server(raw)


def test_unknown_server_error_codes_stay_fatal():
    message = decode_server('{"type":"error","code":"new-thing","message":"m"}')
    assert message == ErrorMessage(ErrorCode.BAD_REQUEST, "m")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type":"join","v":1,"name":"\xed\xa0\x80"}',  # an encoded surrogate (CESU-8)
        b'{"type":"join","v":1,"name":"\xc0\xaf"}',  # overlong
        b'{"type":"join","v":1,"name":"12345678901234567890\xff"}',  # slow path, invalid byte
    ],
)
def test_invalid_utf8_is_refused_on_both_paths(raw):
    with pytest.raises(ProtocolError):
        decode_client(raw)


def test_integers_too_long_for_int_are_relayed_digit_for_digit():
    digits = "9" * 5000
    message = decode_client('{"type":"signal","data":{"n":' + digits + ',"m":-' + digits + "1}}")
    out = encode(Relayed("p", message.data))
    assert (
        out
        == b'{"type":"signal","from":"p","data":{"n":'
        + digits.encode()
        + b',"m":-'
        + (digits + "1").encode()
        + b"}}"
    )
