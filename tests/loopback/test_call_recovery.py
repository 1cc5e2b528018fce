"""Recovery details of CallSession that need real peer connections but no network:
answers matched to their offer, pings answered, links closed without blocking."""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import VideoStreamTrack

from desktop_call.call.ice import IceConfig
from desktop_call.call.session import CallOptions, CallSession
from desktop_call.call.signaling import ClientState


class StubSignaling:
    """Records what the session sends; no server."""

    def __init__(self, *args: Any) -> None:
        self.sent: list[tuple[dict[str, Any], str | None]] = []
        self.peers: dict[str, Any] = {}
        self.peer_id = "me"
        self.state = ClientState.JOINED
        self.ice_servers = ()

    async def send_signal(self, data: dict[str, Any], to: str | None = None) -> None:
        self.sent.append((data, to))

    async def check_connection(self, within: float = 2.0) -> bool:
        return True

    async def close(self) -> None:
        pass


def session() -> CallSession:
    options = CallOptions("ws://127.0.0.1:9/rooms/x", "me", ice=IceConfig(servers=()))
    return CallSession(options, video=VideoStreamTrack(), signaling_factory=StubSignaling)


async def test_an_answer_to_an_older_offer_is_not_applied_to_a_newer_connection():
    me = session()
    remote = RTCPeerConnection()
    try:
        await me._offer("peer")
        link = me._links["peer"]
        (offer, to), *_ = me._signaling.sent
        assert to == "peer" and offer["nid"] == link.generation
        await remote.setRemoteDescription(RTCSessionDescription(**offer["description"]))
        await remote.setLocalDescription(await remote.createAnswer())
        answer = {"type": "answer", "sdp": remote.localDescription.sdp}

        # The peer answers an offer we have since replaced: ignored.
        await me._on_signal("peer", {"description": answer, "nid": link.generation - 1})
        assert link.pc.signalingState == "have-local-offer"
        # Its answer to this offer is taken.
        await me._on_signal("peer", {"description": answer, "nid": link.generation})
        assert link.pc.signalingState == "stable"
    finally:
        await remote.close()
        await me._shutdown()


async def test_an_answer_echoes_the_offers_number():
    me = session()
    remote = RTCPeerConnection()
    try:
        remote.addTrack(VideoStreamTrack())
        await remote.setLocalDescription(await remote.createOffer())
        offer = {"type": "offer", "sdp": remote.localDescription.sdp}
        await me._on_signal("peer", {"description": offer, "nid": 41})
        (answer, to), *_ = me._signaling.sent
        assert to == "peer" and answer["description"]["type"] == "answer"
        assert answer["nid"] == 41
    finally:
        await remote.close()
        await me._shutdown()


async def test_a_ping_is_answered_and_counts_as_a_sign_of_life():
    me = session()
    try:
        await me._on_signal("peer", {"ping": 7})
        await me._on_signal("peer", {"ping": {"not": "a nonce"}})  # ignored
        assert me._signaling.sent == [({"pong": 7}, "peer")]
        assert me._liveness["peer"].last_signal > 0
    finally:
        await me._shutdown()


async def test_replacing_a_link_does_not_wait_for_the_old_one_to_close():
    me = session()
    gate = asyncio.Event()
    try:
        await me._offer("peer")
        old = me._links["peer"]

        async def slow_close() -> None:  # a close stuck on the network (TURN, DTLS)
            await gate.wait()

        old.close = slow_close
        async with asyncio.timeout(5):
            await me._offer("peer")  # a rebuild: must not wait for the old close
        assert me._links["peer"] is not old
        assert old in me._closing  # still closing, in the background
        gate.set()
    finally:
        gate.set()
        await me._shutdown()
