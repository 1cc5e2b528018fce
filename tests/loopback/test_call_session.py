"""Two call sessions through a real room server on 127.0.0.1, with synthetic media."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable

import pytest
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack

from desktop_call.call.ice import IceConfig, IceServer
from desktop_call.call.jitter import AudioJitterBuffer
from desktop_call.call.session import (
    CallOptions,
    CallSession,
    ChatMessage,
    RemoteControl,
    RemoteTrack,
    SasReady,
    SessionEvent,
)
from desktop_call.call.signaling import PeerLeft, SignalingClient, SignalReceived
from desktop_call.call.state import CallState
from desktop_call.server import RoomServer, ServerConfig

NO_ICE = IceConfig(servers=())
CALL = "test-call"


class Recorder:
    """Collects a session's events and lets a test await the next one that matches."""

    def __init__(self, session: CallSession) -> None:
        self.events: list[SessionEvent] = []
        self._waiters: list[tuple[Callable[[SessionEvent], bool], asyncio.Future]] = []
        session.subscribe(self._on_event)

    def _on_event(self, event: SessionEvent) -> None:
        self.events.append(event)
        for predicate, future in list(self._waiters):
            if not future.done() and predicate(event):
                future.set_result(event)

    async def next(self, predicate: Callable[[SessionEvent], bool], timeout: float = 10):
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        try:
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._waiters.remove((predicate, future))

    def tracks(self, kind: str) -> list:
        return [e.track for e in self.events if isinstance(e, RemoteTrack) and e.track.kind == kind]


def make_session(url: str, name: str, **options) -> CallSession:
    options.setdefault("ice", NO_ICE)
    return CallSession(
        CallOptions(f"{url}/rooms/{CALL}", name, **options),
        video=VideoStreamTrack(),
        audio=AudioStreamTrack(),
    )


async def reach(session: CallSession, state: CallState, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        reached = await session.wait_for(lambda s: s is state)
    assert reached is state, f"{session.options.name} ended in {reached}: {session.errors}"


async def frames_from(track, count: int, timeout: float = 10) -> int:
    """Receive ``count`` frames from a remote track; returns how many arrived."""
    got = 0
    async with asyncio.timeout(timeout):
        while got < count:
            await track.recv()
            got += 1
    return got


@contextlib.asynccontextmanager
async def two_party_call(url: str, **options) -> AsyncIterator[tuple]:
    a, b = make_session(url, "Ana", **options), make_session(url, "Bo", **options)
    ra, rb = Recorder(a), Recorder(b)
    async with a:
        await reach(a, CallState.WAITING)
        async with b:
            await reach(a, CallState.CONNECTED)
            await reach(b, CallState.CONNECTED)
            yield a, b, ra, rb


@pytest.fixture
async def server() -> AsyncIterator[RoomServer]:
    async with RoomServer(ServerConfig(port=0, grace=2.0)) as srv:
        yield srv


async def test_two_sessions_connect_and_media_flows_both_ways(server):
    async with two_party_call(server.url) as (a, b, ra, rb):
        for recorder in (ra, rb):
            video, audio = recorder.tracks("video"), recorder.tracks("audio")
            assert len(video) == 1 and len(audio) == 1
            assert await frames_from(video[0], 10) == 10
            assert await frames_from(audio[0], 10) == 10
        assert a.state is b.state is CallState.CONNECTED


@pytest.mark.parametrize("immediate", [True, False])
async def test_audio_is_decoded_on_arrival_unless_asked_otherwise(server, immediate):
    async with two_party_call(server.url, immediate_audio=immediate) as (a, b, ra, rb):
        assert await frames_from(rb.tracks("audio")[0], 10) == 10
        (link,) = b._links.values()
        (receiver,) = [t.receiver for t in link.pc.getTransceivers() if t.kind == "audio"]
        buffer = receiver._RTCRtpReceiver__jitter_buffer
        assert isinstance(buffer, AudioJitterBuffer) is immediate
        if immediate:
            assert buffer.packets >= 10


async def test_both_sides_show_the_same_verification_code(server):
    async with two_party_call(server.url) as (a, b, ra, rb):
        assert a.sas is not None and a.sas == b.sas
        codes = {e.code for e in ra.events + rb.events if isinstance(e, SasReady)}
        assert codes == {a.sas}


async def test_state_history_is_what_a_person_would_see(server):
    async with two_party_call(server.url) as (a, b, ra, rb):
        pass
    history = [str(e.new) for e in ra.events if hasattr(e, "new")]
    assert history == ["joining", "waiting", "connecting", "connected", "waiting", "ended"]
    history = [str(e.new) for e in rb.events if hasattr(e, "new")]
    assert history == ["joining", "connecting", "connected", "ended"]


async def test_chat_and_media_state_reach_the_other_side(server):
    async with two_party_call(server.url) as (a, b, ra, rb):
        waiting = asyncio.ensure_future(rb.next(lambda e: isinstance(e, ChatMessage)))
        a.send_chat("  hello there  ")
        chat = await waiting
        assert (chat.text, chat.peer_id) == ("hello there", a.peer_id)

        waiting = asyncio.ensure_future(rb.next(lambda e: isinstance(e, RemoteControl)))
        a.set_microphone_muted(True)
        control = await waiting
        assert (control.muted, control.camera) == (True, True)

        waiting = asyncio.ensure_future(rb.next(lambda e: isinstance(e, RemoteControl)))
        a.set_camera_enabled(False)
        control = await waiting
        assert (control.muted, control.camera) == (True, False)


async def test_hang_up_is_announced_and_the_other_side_waits(server):
    async with two_party_call(server.url) as (a, b, ra, rb):
        bye = asyncio.ensure_future(ra.next(lambda e: isinstance(e, RemoteControl) and e.hung_up))
        await b.hang_up()
        await bye
        await reach(a, CallState.WAITING)
        assert b.state is CallState.ENDED


async def test_the_peer_leaves_and_someone_rejoins_the_same_call(server):
    async with two_party_call(server.url) as (a, b, ra, rb):
        await b.hang_up()
        await reach(a, CallState.WAITING)
        c = make_session(server.url, "Cy")
        rc = Recorder(c)
        async with c:
            await reach(c, CallState.CONNECTED)
            await reach(a, CallState.CONNECTED)
            assert await frames_from(rc.tracks("video")[0], 5) == 5
            newest_video = ra.tracks("video")[-1]
            assert await frames_from(newest_video, 5) == 5
            assert a.sas == c.sas


async def test_media_keeps_flowing_while_the_room_server_restarts():
    first = RoomServer(ServerConfig(port=0))
    await first.start()
    port = first.port
    try:
        async with two_party_call(first.url) as (a, b, ra, rb):
            video = rb.tracks("video")[0]
            await frames_from(video, 3)
            await first.close()
            # Signaling is down: media is peer to peer and must not notice.
            assert await frames_from(video, 30) == 30
            assert a.state is b.state is CallState.CONNECTED
            async with RoomServer(ServerConfig(port=port)) as second:
                async with asyncio.timeout(10):
                    while second.stats()["peers"] < 2:  # noqa: ASYNC110 - no event for it
                        await asyncio.sleep(0.05)
                assert await frames_from(video, 10) == 10
                assert a.state is b.state is CallState.CONNECTED
                # The path was kept, not rebuilt: still the first (and only) remote track.
                assert len(rb.tracks("video")) == 1 and len(ra.tracks("video")) == 1
                # And chat, over the kept path, still finds its peer under the new id.
                waiting = asyncio.ensure_future(rb.next(lambda e: isinstance(e, ChatMessage)))
                a.send_chat("still here")
                assert (await waiting).text == "still here"
    finally:
        await first.close()


async def test_glare_settles_on_one_connection(server):
    async with two_party_call(server.url) as (a, b, ra, rb):
        # Both sides rebuild and offer at the same moment.
        await asyncio.gather(a._offer(b.peer_id), b._offer(a.peer_id))
        await reach(a, CallState.CONNECTED)
        await reach(b, CallState.CONNECTED)
        polite, impolite = (a, b) if a.peer_id < b.peer_id else (b, a)
        assert not polite._links[impolite.peer_id].offerer  # it yielded and answered
        assert impolite._links[polite.peer_id].offerer
        assert len(a._links) == len(b._links) == 1
        await frames_from(rb.tracks("video")[-1], 5)
        await frames_from(ra.tracks("video")[-1], 5)


async def test_a_broken_media_path_is_rebuilt_by_the_offerer(server):
    async with two_party_call(server.url, media_timeout=1.0, heartbeat_interval=0.2) as (
        a,
        b,
        ra,
        rb,
    ):
        offerer, answerer = (b, a)  # b joined second, so b offered
        old_pc = offerer.peer_connection()
        # Cut the path under the answerer: its connection dies without a word.
        await answerer.peer_connection().close()
        async with asyncio.timeout(15):
            while offerer.peer_connection() is old_pc or offerer.state is not CallState.CONNECTED:
                await offerer.wait_for(lambda s: s is CallState.CONNECTED)
                await asyncio.sleep(0.05)
        await reach(answerer, CallState.CONNECTED)
        await frames_from(ra.tracks("video")[-1], 5)


async def test_a_room_full_is_a_failed_call_with_a_reason(server):
    async with two_party_call(server.url) as (a, b, ra, rb):
        third = make_session(server.url, "Di")
        async with third:
            await reach(third, CallState.FAILED)
        assert "room-full" in third.machine.reason
        assert a.state is b.state is CallState.CONNECTED


async def test_an_unreachable_stun_server_does_not_stall_setup(server):
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # never answers
    silent.bind(("127.0.0.1", 0))
    try:
        host, port = silent.getsockname()
        ice = IceConfig(servers=(IceServer(f"stun:{host}:{port}"),), gather_timeout=1.0)
        started = time.monotonic()
        async with two_party_call(server.url, ice=ice) as (a, b, ra, rb):
            elapsed = time.monotonic() - started
        # aioice alone waits 5 s for the STUN answer on each side; bounded, about 1 s each.
        assert elapsed < 4.0, elapsed
    finally:
        silent.close()


async def test_remote_tracks_end_when_the_call_ends(server):
    async with two_party_call(server.url) as (a, b, ra, rb):
        video = rb.tracks("video")[0]
        await frames_from(video, 2)
    with pytest.raises(MediaStreamError):
        async with asyncio.timeout(5):
            while True:
                await video.recv()


class FingerprintRewritingClient(SignalingClient):
    """A signaling path that swaps the DTLS fingerprint in every description it delivers."""

    FAKE = ":".join(["5A"] * 32)

    async def events(self):
        async for event in super().events():
            if isinstance(event, SignalReceived) and "description" in event.data:
                description = dict(event.data["description"])
                description["sdp"] = re.sub(
                    r"a=fingerprint:sha-256 [0-9A-F:]+",
                    f"a=fingerprint:sha-256 {self.FAKE}",
                    description["sdp"],
                )
                event = SignalReceived(event.sender, {"description": description})
            yield event


async def test_a_rewritten_fingerprint_shows_different_codes_and_no_media(server):
    a = make_session(server.url, "Ana")
    b = CallSession(
        CallOptions(f"{server.url}/rooms/{CALL}", "Bo", ice=NO_ICE),
        video=VideoStreamTrack(),
        audio=AudioStreamTrack(),
        signaling_factory=FingerprintRewritingClient,
    )
    ra, rb = Recorder(a), Recorder(b)
    async with a:
        await reach(a, CallState.WAITING)
        code_a = asyncio.ensure_future(ra.next(lambda e: isinstance(e, SasReady)))
        code_b = asyncio.ensure_future(rb.next(lambda e: isinstance(e, SasReady)))
        async with b:
            assert (await code_a).code != (await code_b).code
            # DTLS checks the certificate against the (rewritten) fingerprint: no path.
            await reach(b, CallState.RECONNECTING, timeout=30)
            assert a.state is not CallState.CONNECTED or b.state is not CallState.CONNECTED


def media_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.endswith("-decoder")]


async def test_a_close_cut_short_by_hanging_up_still_completes(server):
    """Hanging up cancels the session's tasks; one of them may be closing the connection
    to a peer who just left. That close must finish anyway: cut short, aiortc's decoder
    threads stay blocked and the process cannot exit."""
    async with two_party_call(server.url) as (a, b, ra, rb):
        await frames_from(rb.tracks("video")[0], 2)
        assert media_threads()
        # b learns that a left, and hangs up while that connection is being closed.
        pc = b.peer_connection(a.peer_id)
        closing = asyncio.ensure_future(b._on_signaling(PeerLeft(a.peer_id, "left")))
        for _ in range(3):
            await asyncio.sleep(0)  # the close has begun
        closing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closing
        await b.hang_up()
        assert pc.connectionState == "closed"
        assert all(t.stopped for t in pc.getTransceivers())
    async with asyncio.timeout(5):
        while media_threads():  # noqa: ASYNC110 - threads end on their own; nothing to await
            await asyncio.sleep(0.05)
