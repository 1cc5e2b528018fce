"""The room registry: join, relay, leave, drop, resume, expiry. No event loop, no sockets."""

import itertools

import pytest

from desktop_call.server.rooms import Close, Event, Registry, RegistryConfig, Send
from desktop_call.signaling.protocol import (
    ErrorCode,
    Join,
    Peer,
    PeerJoined,
    PeerLeft,
    ProtocolError,
    Relayed,
    Signal,
    Welcome,
)

ROOM = "7k3m-q9vd-x2ha"


def make_registry(**config) -> Registry:
    ids = (f"p{n}" for n in itertools.count(1))
    tokens = (f"r{n}" for n in itertools.count(1))
    return Registry(
        RegistryConfig(**config),
        new_peer_id=lambda: next(ids),
        new_resume_token=lambda: next(tokens),
    )


def sends(actions) -> list[tuple[object, object]]:
    return [(a.conn, a.message) for a in actions if isinstance(a, Send)]


def events(actions) -> list[str]:
    return [a.name for a in actions if isinstance(a, Event)]


def test_first_join_gets_an_empty_welcome():
    reg = make_registry()
    actions = reg.join("A", ROOM, Join("Ana"), now=0)
    assert sends(actions) == [("A", Welcome("p1", "r1", (), 2))]
    assert events(actions) == ["join"]
    assert (reg.rooms, reg.peers) == (1, 1)
    assert reg.peer_of("A") == (ROOM, "p1")


def test_second_join_lists_the_first_and_announces_itself():
    reg = make_registry()
    reg.join("A", ROOM, Join("Ana"), now=0)
    actions = reg.join("B", ROOM, Join("Bo"), now=1)
    assert sends(actions) == [
        ("B", Welcome("p2", "r2", (Peer("p1", "Ana"),), 2)),
        ("A", PeerJoined(Peer("p2", "Bo"))),
    ]


def test_peers_are_listed_oldest_first():
    reg = make_registry(capacity=4)
    for conn, name in zip("ABC", ["a", "b", "c"], strict=True):
        reg.join(conn, ROOM, Join(name), now=0)
    welcome = sends(reg.join("D", ROOM, Join("d"), now=0))[0][1]
    assert [p.id for p in welcome.peers] == ["p1", "p2", "p3"]


@pytest.mark.parametrize(
    ("config", "join", "code"),
    [
        ({}, Join("x", v=2), ErrorCode.VERSION),
        ({"token": "s3cret"}, Join("x"), ErrorCode.UNAUTHORIZED),
        ({"token": "s3cret"}, Join("x", token="wrong"), ErrorCode.UNAUTHORIZED),
        ({"token": "s3cret"}, Join("x", v=2, token="wrong"), ErrorCode.VERSION),  # version first
    ],
)
def test_refused_joins(config, join, code):
    reg = make_registry(**config)
    with pytest.raises(ProtocolError) as info:
        reg.join("A", ROOM, join, now=0)
    assert info.value.code is code
    assert (reg.rooms, reg.peers) == (0, 0)


def test_the_right_token_is_accepted():
    reg = make_registry(token="s3cret")
    assert sends(reg.join("A", ROOM, Join("x", token="s3cret"), now=0))


def test_capacity_is_enforced_after_the_token():
    reg = make_registry(token="t")
    reg.join("A", ROOM, Join("a", token="t"), now=0)
    reg.join("B", ROOM, Join("b", token="t"), now=0)
    with pytest.raises(ProtocolError) as info:
        reg.join("C", ROOM, Join("c", token="bad"), now=0)
    assert info.value.code is ErrorCode.UNAUTHORIZED
    with pytest.raises(ProtocolError) as info:
        reg.join("C", ROOM, Join("c", token="t"), now=0)
    assert info.value.code is ErrorCode.ROOM_FULL
    assert reg.peers == 2


def test_a_second_join_on_one_connection_is_refused():
    reg = make_registry()
    reg.join("A", ROOM, Join("a"), now=0)
    with pytest.raises(ProtocolError) as info:
        reg.join("A", "other-room", Join("a"), now=0)
    assert info.value.code is ErrorCode.BAD_REQUEST


def two_peers(**config) -> Registry:
    reg = make_registry(**config)
    reg.join("A", ROOM, Join("a"), now=0)
    reg.join("B", ROOM, Join("b"), now=0)
    return reg


def test_signal_with_and_without_to_never_echoes():
    reg = make_registry(capacity=3)
    for conn in "ABC":
        reg.join(conn, ROOM, Join(conn), now=0)
    assert sends(reg.signal("A", Signal({"x": 1}, to="p2"))) == [("B", Relayed("p1", {"x": 1}))]
    assert sends(reg.signal("A", Signal({"x": 2}))) == [
        ("B", Relayed("p1", {"x": 2})),
        ("C", Relayed("p1", {"x": 2})),
    ]


@pytest.mark.parametrize("to", ["p1", "nobody", ""])
def test_unknown_or_own_peer_is_not_fatal(to):
    reg = two_peers()
    with pytest.raises(ProtocolError) as info:
        reg.signal("A", Signal({}, to=to))
    assert info.value.code is ErrorCode.UNKNOWN_PEER
    assert not info.value.code.fatal


def test_signal_before_join_is_refused():
    reg = make_registry()
    with pytest.raises(ProtocolError) as info:
        reg.signal("A", Signal({}))
    assert info.value.code is ErrorCode.BAD_REQUEST


def test_rooms_are_isolated():
    reg = make_registry()
    reg.join("A", "room-one", Join("a"), now=0)
    reg.join("X", "room-two", Join("x"), now=0)
    assert sends(reg.signal("A", Signal({"x": 1}))) == []
    assert reg.rooms == 2


def test_leave_frees_the_slot_at_once():
    reg = two_peers()
    actions = reg.leave("B")
    assert sends(actions) == [("A", PeerLeft("p2", "left"))]
    assert events(actions) == ["leave"]
    assert reg.peers == 1
    assert reg.leave("B") == []  # idempotent
    reg.join("C", ROOM, Join("c"), now=0)  # the place is free again
    assert reg.peers == 2


def test_the_room_dies_with_its_last_peer():
    reg = two_peers()
    reg.leave("A")
    reg.leave("B")
    assert (reg.rooms, reg.peers) == (0, 0)


def test_drop_keeps_the_slot_quietly_until_grace_ends():
    reg = two_peers(grace=30)
    assert sends(reg.drop("B", now=10)) == []
    assert (reg.peers, reg.peers_in_grace) == (2, 1)
    assert reg.next_deadline() == 40
    assert reg.expire(now=39.9) == []
    actions = reg.expire(now=40)
    assert sends(actions) == [("A", PeerLeft("p2", "timeout"))]
    assert events(actions) == ["timeout"]
    assert (reg.peers, reg.peers_in_grace) == (1, 0)
    assert reg.next_deadline() is None


def test_a_full_room_counts_slots_in_grace_until_they_expire():
    reg = two_peers(grace=30)
    reg.drop("B", now=0)
    with pytest.raises(ProtocolError):
        reg.join("C", ROOM, Join("c"), now=29)
    actions = reg.join("C", ROOM, Join("c"), now=30)  # expiry happens first
    assert sends(actions)[0] == ("A", PeerLeft("p2", "timeout"))
    assert isinstance(sends(actions)[1][1], Welcome)


def test_resume_in_grace_keeps_the_id_and_delivers_the_queue_in_order():
    reg = two_peers(grace=30, queue_limit=3)
    reg.drop("B", now=0)
    for n in range(5):
        assert reg.signal("A", Signal({"n": n}, to="p2" if n % 2 else None)) == []
    actions = reg.join("B2", ROOM, Join("b", resume="r2"), now=5)
    assert sends(actions) == [
        ("B2", Welcome("p2", "r3", (Peer("p1", "a"),), 2)),
        ("B2", Relayed("p1", {"n": 0})),
        ("B2", Relayed("p1", {"n": 1})),
        ("B2", Relayed("p1", {"n": 2})),
    ]
    assert events(actions) == ["resume"]
    assert reg.peers_in_grace == 0
    assert reg.expire(now=100) == []  # the grace timer no longer applies
    assert sends(reg.signal("A", Signal({"n": 9}))) == [("B2", Relayed("p1", {"n": 9}))]


def test_old_resume_tokens_stop_working():
    reg = two_peers()
    reg.drop("B", now=0)
    reg.join("B2", ROOM, Join("b", resume="r2"), now=1)
    reg.drop("B2", now=2)
    welcome = sends(reg.join("B3", ROOM, Join("b", resume="r3"), now=3))[0][1]
    assert welcome.id == "p2"
    reg.leave("A")
    welcome = sends(reg.join("X", ROOM, Join("x", resume="r2"), now=4))[0][1]
    assert welcome.id != "p2"  # a plain new join


def test_resume_with_a_token_of_another_room_is_a_plain_join():
    reg = two_peers()
    actions = reg.join("X", "other-room", Join("x", resume="r1"), now=0)
    assert sends(actions)[0][1].id == "p3"


def test_resume_while_the_old_connection_is_open_replaces_it():
    reg = two_peers()
    actions = reg.join("B2", ROOM, Join("b", resume="r2"), now=0)
    closes = [a for a in actions if isinstance(a, Close)]
    assert [(c.conn, c.error.code) for c in closes] == [("B", ErrorCode.REPLACED)]
    assert sends(actions) == [("B2", Welcome("p2", "r3", (Peer("p1", "a"),), 2))]
    assert reg.peer_of("B") is None
    assert reg.leave("B") == []  # the replaced connection's close changes nothing
    assert reg.peers == 2


def test_peer_ids_are_never_reused_by_default_factories():
    reg = Registry(RegistryConfig(capacity=2))
    seen = set()
    for n in range(200):
        conn = f"c{n}"
        welcome = next(
            a.message for a in reg.join(conn, ROOM, Join("x"), now=0) if isinstance(a, Send)
        )
        assert welcome.id not in seen
        assert len(welcome.id) >= 16
        seen.add(welcome.id)
        reg.leave(conn)


def test_zero_grace_frees_a_dropped_slot_at_once():
    reg = two_peers(grace=0)
    assert sends(reg.drop("B", now=0)) == [("A", PeerLeft("p2", "timeout"))]


def test_welcome_extra_fields_come_from_the_hook():
    reg = Registry(welcome_extra=lambda room, peer: {"ice_servers": [room]})
    welcome = sends(reg.join("A", ROOM, Join("a"), now=0))[0][1]
    assert welcome.extra == {"ice_servers": [ROOM]}
