"""The verification code under attack: a room server that sits in the middle of the media.

``MitmRoom`` speaks protocol v1 to two real app processes, but instead of relaying the
newcomer's offer it answers with a peer connection of its own, offers the other side a
second one, and relays the decoded media and the control channel between the two. Both
DTLS sessions end at the attacker, media flows both ways, and nothing looks wrong, except
the six digits: each side hashes a different pair of fingerprints. The same room in
honest mode (plain relay) shows the same code on both sides, so the difference is the
attack's and not an accident of the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from typing import Any

import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from test_headless_cli import read_report, run_app
from websockets.asyncio.server import ServerConnection, serve

from desktop_call.call.sas import fingerprints_from_sdp
from desktop_call.call.session import CONTROL_CHANNEL_ID


class ForwardTrack(MediaStreamTrack):
    """Sends whatever the attacker receives from the other side, once that exists."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._source: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()

    def feed_from(self, track: MediaStreamTrack) -> None:
        if not self._source.done():
            self._source.set_result(track)

    async def recv(self):  # type: ignore[override]
        source = await self._source
        return await source.recv()


class MitmRoom:
    """A two-seat room; ``attack=True`` terminates both sides' DTLS and relays the media."""

    def __init__(self, attack: bool) -> None:
        self.attack = attack
        self.peers: dict[str, tuple[ServerConnection, str]] = {}
        self.pcs: list[RTCPeerConnection] = []
        self.facing: dict[str, RTCPeerConnection] = {}
        self.forwards: dict[tuple[str, str], ForwardTrack] = {}  # (victim, kind) -> track
        self.channels: dict[str, Any] = {}
        self.fingerprints_sent: dict[str, list[str]] = {}
        self.url = ""

    async def handle(self, ws: ServerConnection) -> None:
        join = json.loads(await ws.recv())
        assert join["type"] == "join"
        me = secrets.token_hex(8)
        others = [{"id": pid, "name": name} for pid, (_, name) in self.peers.items()]
        welcome = {"type": "welcome", "v": 1, "id": me, "resume": secrets.token_hex(8)}
        await ws.send(json.dumps({**welcome, "peers": others, "capacity": 2}))
        for other, _ in list(self.peers.values()):
            await other.send(json.dumps({"type": "peer-joined", "peer": {"id": me, "name": ""}}))
        self.peers[me] = (ws, join.get("name", ""))
        try:
            async for text in ws:
                message = json.loads(text)
                if message.get("type") == "signal":
                    await self.on_signal(me, message["to"], message["data"])
        finally:
            del self.peers[me]

    async def deliver(self, to: str, sender: str, data: dict[str, Any]) -> None:
        ws, _ = self.peers[to]
        await ws.send(json.dumps({"type": "signal", "from": sender, "data": data}))

    async def on_signal(self, sender: str, to: str, data: dict[str, Any]) -> None:
        if not self.attack:
            await self.deliver(to, sender, data)
            return
        description = data.get("description")
        if description is None:
            return  # candidates: the descriptions are complete, and ours carry our own
        if description["type"] == "offer":
            await self.intercept_offer(sender, to, description["sdp"])
        else:
            await self.facing[sender].setRemoteDescription(
                RTCSessionDescription(sdp=description["sdp"], type="answer")
            )

    def forward(self, victim: str, kind: str) -> ForwardTrack:
        """What the attacker sends ``victim``: the other side's media, once it arrives."""
        return self.forwards.setdefault((victim, kind), ForwardTrack(kind))

    def new_pc(self, victim: str) -> RTCPeerConnection:
        pc = RTCPeerConnection()  # no STUN: loopback host candidates only
        self.pcs.append(pc)
        self.facing[victim] = pc
        channel = pc.createDataChannel("control", negotiated=True, id=CONTROL_CHANNEL_ID)
        self.channels[victim] = channel

        @channel.on("message")
        def relay_control(message: str | bytes) -> None:
            other = next(p for p in self.peers if p != victim)
            target = self.channels.get(other)
            if target is not None and target.readyState == "open":
                target.send(message)

        @pc.on("track")
        def relay_media(track: MediaStreamTrack) -> None:
            other = next(p for p in self.peers if p != victim)
            self.forward(other, track.kind).feed_from(track)

        return pc

    async def intercept_offer(self, offerer: str, answerer: str, sdp: str) -> None:
        # Answer the offerer ourselves...
        toward_offerer = self.new_pc(offerer)
        await toward_offerer.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        for transceiver in toward_offerer.getTransceivers():
            transceiver.sender.replaceTrack(self.forward(offerer, transceiver.kind))
            transceiver.direction = "sendrecv"
        await toward_offerer.setLocalDescription(await toward_offerer.createAnswer())
        self.fingerprints_sent[offerer] = fingerprints_from_sdp(toward_offerer.localDescription.sdp)
        # ...and offer the answerer a second connection, in the offerer's name.
        toward_answerer = self.new_pc(answerer)
        for kind in ("video", "audio"):
            toward_answerer.addTrack(self.forward(answerer, kind))
        await toward_answerer.setLocalDescription(await toward_answerer.createOffer())
        self.fingerprints_sent[answerer] = fingerprints_from_sdp(
            toward_answerer.localDescription.sdp
        )
        await self.deliver(offerer, answerer, _description(toward_offerer))
        await self.deliver(answerer, offerer, _description(toward_answerer))

    async def close(self) -> None:
        for track in self.forwards.values():
            track.stop()
        for pc in self.pcs:
            with contextlib.suppress(MediaStreamError):
                await pc.close()


def _description(pc: RTCPeerConnection) -> dict[str, Any]:
    return {"description": {"type": pc.localDescription.type, "sdp": pc.localDescription.sdp}}


@pytest.fixture(params=[False, True], ids=["honest-relay", "dtls-mitm"])
async def room(request):
    mitm = MitmRoom(attack=request.param)
    async with serve(mitm.handle, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        mitm.url = f"ws://127.0.0.1:{port}"
        try:
            yield mitm
        finally:
            await mitm.close()


async def test_codes_match_on_an_honest_path_and_differ_through_a_dtls_mitm(room, tmp_path):
    reports = [tmp_path / "a.json", tmp_path / "b.json"]
    common = ["--server", room.url, "--duration", "3", "--codec", "VP8"]
    results = await asyncio.gather(
        run_app("--join", "mitm-test-room", "--report", str(reports[0]), *common),
        run_app("--join", "mitm-test-room", "--report", str(reports[1]), *common),
    )
    for code, out, err in results:
        assert code == 0, err + out  # media flowed both ways: nothing but the code tells
    a, b = (read_report(path) for path in reports)
    for report in (a, b):
        assert report["media_both_ways"]
        assert 400 < report["audio_dominant_hz"] < 480  # the tone crossed the attacker
        assert report["sas"] is not None
    if room.attack:
        assert a["sas"] != b["sas"], "a man in the middle went unnoticed"
        # Two DTLS sessions, two attacker certificates: one shown to each side.
        shown_a, shown_b = room.fingerprints_sent.values()
        assert set(shown_a).isdisjoint(shown_b)
    else:
        assert a["sas"] == b["sas"]
        assert not room.pcs
