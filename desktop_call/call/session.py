"""A call: the signaling client, one peer connection per remote peer, and the state.

:class:`CallSession` joins a room through :class:`~.signaling.SignalingClient` and
keeps one aiortc ``RTCPeerConnection`` per remote peer (1:1 today; the links are a
dict, so a small mesh needs no redesign). It feeds the pure
:class:`~.state.CallStateMachine` and tells observers what happened.

Negotiation (``docs/protocol.md``): the newcomer offers to every peer in its
``welcome``; the others answer. aiortc has no rollback and cannot restart ICE, so
**every offer is a new peer connection**: an incoming offer replaces the link to
that peer, and recovering from a broken media path means the offering side builds
a new connection and offers again. On glare (both sides offering), the peer whose
id sorts lower is polite: it drops its own offer and answers. Our descriptions are
complete (aiortc gathers before ``setLocalDescription`` returns; gathering is
bounded); trickled candidates from browsers are accepted.

A data channel (negotiated out of band, id 0, so both sides open it without a
round trip) carries chat, mute/camera state, hang-up, and a heartbeat that tells a
frozen path from a quiet one faster than ICE consent does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.sdp import candidate_from_sdp

from .ice import IceConfig, bound_gathering
from .ice_policy import bound_turn_release, prefer_direct_paths
from .jitter import use_audio_jitter_buffer
from .liveness import PeerLiveness, Verdict
from .sas import SasError, verification_code
from .signaling import (
    ClientState,
    Connected,
    Disconnected,
    Fatal,
    Peer,
    PeerJoined,
    PeerLeft,
    SignalingClient,
    SignalingClosed,
    SignalReceived,
)
from .state import CallInput, CallState, CallStateMachine, StateChange
from .stats import StatsSummary, summarize
from .video_jitter import use_video_jitter_buffer

__all__ = [
    "CallOptions",
    "CallSession",
    "ChatMessage",
    "RemoteControl",
    "RemoteTrack",
    "SasReady",
    "SessionEvent",
]

log = logging.getLogger("desktop_call.call.session")

CONTROL_CHANNEL_ID = 0
MAX_CONTROL_MESSAGE = 16 * 1024
MAX_CHAT_CHARS = 4000
CONTROL_OUTBOX_LIMIT = 100


# ------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class RemoteTrack:
    """A remote peer's audio or video track arrived (again, after a rebuild)."""

    peer_id: str
    track: MediaStreamTrack


@dataclass(frozen=True, slots=True)
class ChatMessage:
    peer_id: str  # the sender ("" for our own message echoed to observers)
    text: str
    sent_at: float


@dataclass(frozen=True, slots=True)
class RemoteControl:
    """The remote peer's microphone/camera state, or its hang-up."""

    peer_id: str
    muted: bool | None = None
    camera: bool | None = None
    hung_up: bool = False


@dataclass(frozen=True, slots=True)
class SasReady:
    peer_id: str
    code: str


SessionEvent = StateChange | RemoteTrack | ChatMessage | RemoteControl | SasReady | StatsSummary


@dataclass(frozen=True, slots=True)
class CallOptions:
    room_url: str
    name: str = ""
    token: str | None = None
    ice: IceConfig = field(default_factory=IceConfig)
    video_codec: str | None = None  # "VP8" or "H264"; None: aiortc's order
    #: Media silent this long (no heartbeat, or ICE disconnected) counts as broken.
    media_timeout: float = 5.0
    heartbeat_interval: float = 1.0
    #: A rebuilt connection that has not connected after this long is rebuilt again;
    #: sooner if its gathering got no answer from any STUN/TURN server (the network was
    #: down when it was built), so a returning network is used within seconds.
    rebuild_timeout: float = 10.0
    short_rebuild_timeout: float = 4.0
    stats_interval: float = 1.0
    #: After a signaling restart, how long to wait for a peer's new id over the media path.
    hello_wait: float = 2.0
    #: Decode audio packets as they arrive (jitter.AudioJitterBuffer) instead of after
    #: aiortc's 80 ms prefetch; the playback buffer smooths the jitter.
    immediate_audio: bool = True
    #: A resume token saved by an earlier run of the app in this room (it crashed or was
    #: killed): the first join takes its place back instead of finding the room full.
    resume: str | None = None
    #: Called with each new resume token (after every welcome), for the app to save.
    on_resume_token: Callable[[str], None] | None = None
    #: Media silent this long: ask the peer over signaling whether it is still there;
    #: no answer within ``answer_timeout`` while the media is down: it is unreachable,
    #: and the call shows ``waiting`` (liveness.py).
    probe_after: float = 2.5
    answer_timeout: float = 3.0


# ------------------------------------------------------------------- peer links


class _Link:
    """One remote peer: its peer connection, control channel, and negotiation state."""

    _generations = itertools.count(1)

    def __init__(self, peer_id: str, offerer: bool, pc: RTCPeerConnection) -> None:
        self.peer_id = peer_id
        self.offerer = offerer
        self.pc = pc
        self.generation = next(self._generations)
        self.channel: RTCDataChannel | None = None
        self.pending_candidates: list[dict[str, Any]] = []
        self.remote_description_set = False
        self.last_heard = time.monotonic()
        self.connected_at: float | None = None
        self.created_at = time.monotonic()
        self.sas: str | None = None
        self.proxies: list[MediaStreamTrack] = []
        self.control_outbox: list[dict[str, Any]] = []  # until the channel opens
        self.offer_nid: int | None = None  # the offer we answered (its "nid")
        self.short_gathering = False  # no server candidate: the servers were unreachable

    async def close(self) -> None:
        for proxy in self.proxies:
            proxy.stop()
        try:
            bound_turn_release(self.pc)  # not a minute of TURN retries when offline
            await self.pc.close()
        except Exception:  # a half-built connection: log it, the call goes on
            log.exception("closing the connection to %s failed", self.peer_id)


class CallSession:
    """One person's side of a call. ``async with CallSession(options, ...) as call:``."""

    def __init__(
        self,
        options: CallOptions,
        *,
        video: MediaStreamTrack | None = None,
        audio: MediaStreamTrack | None = None,
        signaling_factory: Callable[..., SignalingClient] = SignalingClient,
    ) -> None:
        self.options = options
        self.machine = CallStateMachine()
        self._local_tracks = [t for t in (audio, video) if t is not None]
        self._relay = MediaRelay()
        resume = {"resume": options.resume} if options.resume else {}
        self._signaling = signaling_factory(options.room_url, options.name, options.token, **resume)
        self._links: dict[str, _Link] = {}
        self._closing: dict[_Link, asyncio.Task[None]] = {}  # closes under way or done
        self._observers: list[Callable[[SessionEvent], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._main: asyncio.Task[None] | None = None
        self._closed = False
        self.local_muted = False
        self.local_camera = True
        self.errors: list[str] = []
        self.last_stats: StatsSummary | None = None
        self._rekeyed = asyncio.Event()
        self._sas: str | None = None
        self._liveness: dict[str, PeerLiveness] = {}  # by remote peer id
        self._pings = itertools.count(1)
        #: Every state change with its monotonic time (reports, timelines).
        self.state_history: list[tuple[float, StateChange]] = []
        #: (monotonic time, "joined" | "resumed" | "rejoined" | "disconnected", detail).
        self.signaling_history: list[tuple[float, str, str]] = []
        self.machine.subscribe(self._note_state)
        self.machine.subscribe(self._emit)

    # ------------------------------------------------------------------ queries

    @property
    def state(self) -> CallState:
        return self.machine.state

    @property
    def peer_id(self) -> str | None:
        return self._signaling.peer_id

    @property
    def sas(self) -> str | None:
        """The verification code of the newest connected path (kept after hang-up)."""
        return self._sas

    def peer_name(self, peer_id: str) -> str:
        """The display name a remote peer joined with ("" if unknown)."""
        peer = self._signaling.peers.get(peer_id)
        return peer.name if peer is not None else ""

    def peer_connection(self, peer_id: str | None = None) -> RTCPeerConnection | None:
        if peer_id is None:
            return next((link.pc for link in self._links.values()), None)
        link = self._links.get(peer_id)
        return link.pc if link else None

    def subscribe(self, observer: Callable[[SessionEvent], None]) -> Callable[[], None]:
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    async def wait_for(self, predicate: Callable[[CallState], bool]) -> CallState:
        """Wait until the state satisfies ``predicate`` or is final; returns that state.

        Bound it with ``asyncio.timeout`` where a deadline applies.
        """
        if predicate(self.state) or self.state.final:
            return self.state
        reached: asyncio.Future[CallState] = asyncio.get_running_loop().create_future()

        def check(change: StateChange) -> None:
            if (predicate(change.new) or change.new.final) and not reached.done():
                reached.set_result(change.new)

        unsubscribe = self.machine.subscribe(check)
        try:
            return await reached
        finally:
            unsubscribe()

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self._main is not None:
            raise RuntimeError("a CallSession starts once")
        self.machine.feed(CallInput.JOIN)
        await self._signaling.start()
        self._main = asyncio.create_task(self._run(), name="call-session")

    async def hang_up(self) -> None:
        """Tell the peers, leave the room, close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for link in self._links.values():
            self._send_control(link, {"type": "bye"})
        self.machine.feed(CallInput.HANG_UP)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._signaling.leave(), 3)
        await self._shutdown()

    async def _shutdown(self) -> None:
        self._closed = True
        current = asyncio.current_task()
        tasks = [t for t in (self._main, *self._tasks) if t is not None and t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        links, self._links = list(self._links.values()), {}
        for link in links:
            self._close_link(link)
        # Including closes that a cancelled task had started: an interrupted
        # pc.close() leaves aiortc's decoder threads blocked, and the process
        # could not exit.
        await asyncio.gather(*self._closing.values(), return_exceptions=True)
        await self._signaling.close()

    def _close_link(self, link: _Link) -> asyncio.Future[None]:
        """Close a link in a task of its own that no cancellation interrupts; the
        returned future can be awaited (shielded) or dropped."""
        task = self._closing.get(link)
        if task is None:
            task = self._closing[link] = asyncio.ensure_future(link.close())
            task.add_done_callback(lambda _task: self._closing.pop(link, None))
        return asyncio.shield(task)

    async def __aenter__(self) -> CallSession:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.hang_up()

    # ------------------------------------------------------------- user actions

    def send_chat(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        if len(text) > MAX_CHAT_CHARS:
            raise ValueError(f"a chat message is at most {MAX_CHAT_CHARS} characters")
        for link in self._links.values():
            self._send_control(link, {"type": "chat", "text": text, "sent_at": time.time()})

    def set_microphone_muted(self, muted: bool) -> None:
        """Mute (silence is sent; the track and the negotiation stay) and tell the peers."""
        self.local_muted = muted
        self._set_track_state("audio", enabled=not muted)
        self._broadcast_media_state()

    def set_camera_enabled(self, enabled: bool) -> None:
        """Camera off sends black frames on the same track, and tells the peers."""
        self.local_camera = enabled
        self._set_track_state("video", enabled=enabled)
        self._broadcast_media_state()

    def _set_track_state(self, kind: str, enabled: bool) -> None:
        for track in self._local_tracks:
            if track.kind == kind and hasattr(track, "enabled"):
                track.enabled = enabled  # media.SwitchableTrack

    def _broadcast_media_state(self) -> None:
        message = {"type": "state", "muted": self.local_muted, "camera": self.local_camera}
        for link in self._links.values():
            self._send_control(link, message)

    # ------------------------------------------------------------ the main loop

    async def _run(self) -> None:
        self._spawn(self._watchdog(), "watchdog")
        self._spawn(self._stats_loop(), "stats")
        try:
            async for event in self._signaling.events():
                await self._on_signaling(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: fail the call loudly rather than hang
            log.exception("call session failed")
            self._fail(f"internal error: {exc}")

    async def _on_signaling(self, event: object) -> None:
        self._note_signaling(event)
        match event:
            case Connected(welcome=welcome, resumed=resumed):
                if self.options.on_resume_token is not None:
                    self.options.on_resume_token(welcome.resume)
                problem = self.options.ice.relay_problem(self._signaling.ice_servers)
                if problem is not None:
                    self._fail(problem)  # no path could be made: say why, now
                    return
                for live in self._liveness.values():
                    live.signaling_restarted()
                if not resumed:
                    await self._on_new_identity(welcome.peers)
            case PeerJoined(peer=peer):
                self.machine.feed(CallInput.PEER_JOINED, peer.name)
            case PeerLeft(id=peer_id, reason=reason):
                self._liveness.pop(peer_id, None)
                link = self._links.pop(peer_id, None)
                if link is not None:
                    self._close_link(link)  # in the background (_close_link)
                if not self._links and not self._signaling.peers:
                    self.machine.feed(CallInput.PEER_LEFT, reason)
            case SignalReceived(sender=sender, data=data):
                await self._on_signal(sender, data)
            case Disconnected(reason=reason, will_retry=True):
                log.info("signaling dropped (%s); media continues", reason)
            case Fatal(code=code, message=message):
                self._fail(f"{code}: {message}" if code else message)

    def _note_state(self, change: StateChange) -> None:
        self.state_history.append((time.monotonic(), change))
        del self.state_history[:-1000]

    def _note_signaling(self, event: object) -> None:
        if isinstance(event, Connected):
            first = not self.signaling_history
            kind = "resumed" if event.resumed else "joined" if first else "rejoined"
            self.signaling_history.append((time.monotonic(), kind, event.peer_id))
        elif isinstance(event, Disconnected):
            self.signaling_history.append((time.monotonic(), "disconnected", event.reason))
        del self.signaling_history[:-1000]  # bounded, a flapping network included

    async def _on_new_identity(self, peers: tuple[Peer, ...]) -> None:
        """Joined with a fresh id: first join, or a resume the server could not honour.

        A media path that is up survives a signaling restart: it is kept, and both
        sides tell each other their new ids over the control channel ("hello") so
        the link is found under the new id. Paths that are not up are dropped.
        """
        healthy = {pid: link for pid, link in self._links.items() if link.connected_at}
        stale = [link for link in self._links.values() if not link.connected_at]
        self._links = healthy
        for link in stale:
            self._close_link(link)
        for link in healthy.values():
            self._send_control(link, {"type": "hello", "id": self.peer_id})
        if not peers:
            self.machine.feed(CallInput.WELCOMED_ALONE)
            return
        self.machine.feed(CallInput.WELCOMED_WITH_PEERS)
        for peer in peers:
            if peer.id in self._links:
                continue
            if healthy:  # maybe the same person under a new id: give its hello a moment
                self._spawn(self._offer_unless_known(peer.id), "offer")
            else:
                await self._offer(peer.id)

    async def _offer_unless_known(self, peer_id: str) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.options.hello_wait):
                while peer_id not in self._links:
                    self._rekeyed.clear()
                    await self._rekeyed.wait()
        if peer_id not in self._links:
            await self._offer(peer_id)

    def _rekey(self, link: _Link, new_id: str) -> None:
        """The peer behind ``link`` now has the signaling id ``new_id``."""
        if link.peer_id == new_id or self._links.get(link.peer_id) is not link:
            return
        del self._links[link.peer_id]
        other = self._links.get(new_id)
        if other is not None:  # a negotiation under the new id raced the hello
            self._close_link(other)
        log.info("peer %s is now %s", link.peer_id, new_id)
        live = self._liveness.pop(link.peer_id, None)
        if live is not None:
            self._liveness[new_id] = live
        link.peer_id = new_id
        self._links[new_id] = link
        self._rekeyed.set()

    def _fail(self, reason: str) -> None:
        self.errors.append(reason)
        self.machine.feed(CallInput.FATAL, reason)
        if not self._closed:
            self._spawn(self._shutdown(), "shutdown")

    # -------------------------------------------------------------- negotiation

    def _new_link(self, peer_id: str, offerer: bool) -> _Link:
        pc = RTCPeerConnection(self.options.ice.rtc_configuration(self._signaling.ice_servers))
        link = _Link(peer_id, offerer, pc)
        for track in self._local_tracks:
            proxy = self._relay.subscribe(track, buffered=False)
            link.proxies.append(proxy)
            pc.addTrack(proxy)
        self._apply_codec_preference(pc)
        channel = pc.createDataChannel("control", negotiated=True, id=CONTROL_CHANNEL_ID)
        link.channel = channel
        channel.on("message", lambda message: self._on_control(link, message))
        channel.on("open", lambda: self._on_channel_open(link))
        pc.on("connectionstatechange", lambda: self._on_connection_state(link))
        pc.on("track", lambda track: self._on_track(link, track))
        return link

    def _on_track(self, link: _Link, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self.options.immediate_audio:
            for transceiver in link.pc.getTransceivers():
                if transceiver.receiver.track is track:
                    use_audio_jitter_buffer(transceiver.receiver)
        if track.kind == "video":  # skip holes the sender cannot fill (video_jitter.py)
            for transceiver in link.pc.getTransceivers():
                if transceiver.receiver.track is track:
                    use_video_jitter_buffer(transceiver.receiver)
        self._emit(RemoteTrack(link.peer_id, track))

    async def _replace_link(self, peer_id: str, offerer: bool) -> _Link:
        old = self._links.pop(peer_id, None)
        if old is not None:
            # Not awaited: a close can take seconds (aiortc stops its tasks, deletes TURN
            # allocations), and the signaling loop must answer the peer meanwhile.
            self._close_link(old)
        link = self._new_link(peer_id, offerer)
        self._links[peer_id] = link
        return link

    def _apply_codec_preference(self, pc: RTCPeerConnection) -> None:
        wanted = self.options.video_codec
        if not wanted:
            return
        capabilities = RTCRtpSender.getCapabilities("video").codecs
        preferred = [c for c in capabilities if c.mimeType.lower() == f"video/{wanted.lower()}"]
        if not preferred:
            raise ValueError(f"this build of aiortc cannot send {wanted}")
        rtx = [c for c in capabilities if c.mimeType.lower() == "video/rtx"]
        for transceiver in pc.getTransceivers():
            if transceiver.kind == "video":
                transceiver.setCodecPreferences(preferred + rtx)

    async def _offer(self, peer_id: str) -> None:
        if peer_id in self._links and self.state is CallState.CONNECTED:
            self.machine.feed(CallInput.REBUILDING)
        link = await self._replace_link(peer_id, offerer=True)
        pc = link.pc
        offer = await pc.createOffer()
        bound_gathering(pc, self.options.ice.gather_timeout)
        prefer_direct_paths(pc)  # the controlling side tries direct pairs first
        await pc.setLocalDescription(offer)
        if self._links.get(peer_id) is not link:
            return  # replaced while gathering (glare, peer left)
        link.short_gathering = self._has_ice_servers() and _came_up_short(pc)
        await self._send_description(peer_id, link)

    async def _answer(self, peer_id: str, sdp: str, nid: object = None) -> None:
        link = await self._replace_link(peer_id, offerer=False)
        link.offer_nid = nid if isinstance(nid, int) else None
        pc = link.pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        link.remote_description_set = True
        await self._add_pending_candidates(link)
        answer = await pc.createAnswer()
        bound_gathering(pc, self.options.ice.gather_timeout)
        prefer_direct_paths(pc)  # the controlling side tries direct pairs first
        await pc.setLocalDescription(answer)
        if self._links.get(peer_id) is not link:
            return
        self._compute_sas(link)
        await self._send_description(peer_id, link)
        if self.state is CallState.WAITING:
            self.machine.feed(CallInput.PEER_JOINED)
        elif self.state is CallState.CONNECTED:
            self.machine.feed(CallInput.REBUILDING)  # the peer rebuilt the path

    async def _send_description(self, peer_id: str, link: _Link) -> None:
        """Our offer or answer. ``nid`` numbers the negotiation: an offer carries its
        link's generation and the answer echoes it, so an answer to an older offer
        (offers queued while a peer was away are all answered when it is back) is not
        applied to a newer connection."""
        description = link.pc.localDescription
        data: dict[str, Any] = {"description": {"type": description.type, "sdp": description.sdp}}
        nid = link.generation if description.type == "offer" else link.offer_nid
        if nid is not None:
            data["nid"] = nid
        await self._signaling.send_signal(data, to=peer_id)

    async def _on_signal(self, sender: str, data: dict[str, Any]) -> None:
        if self._liveness_of(sender).signal(time.monotonic()):
            self._peer_reachable(sender)
        try:
            if "ping" in data:  # "are you there?" (liveness.py): answer at once
                nonce = data["ping"]
                if isinstance(nonce, int | str) and len(str(nonce)) <= 64:
                    with contextlib.suppress(SignalingClosed):
                        await self._signaling.send_signal({"pong": nonce}, to=sender)
            elif "pong" in data:
                pass  # its arrival was the answer
            elif "description" in data:
                await self._on_description(sender, data["description"], data.get("nid"))
            elif "candidate" in data:
                await self._on_candidate(sender, data["candidate"])
            else:
                log.info("ignored a signal with no description or candidate from %s", sender)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # Bad input from the network: report it, keep the call as it is.
            log.warning("ignored a bad signal from %s: %s", sender, exc)
            self.errors.append(f"bad signal from peer: {exc}")

    async def _on_description(self, sender: str, description: Any, nid: object = None) -> None:
        if not isinstance(description, dict):
            raise ValueError("'description' must be an object")
        kind, sdp = description.get("type"), description.get("sdp")
        if not isinstance(sdp, str) or kind not in ("offer", "answer"):
            raise ValueError("'description' needs type offer/answer and an sdp string")
        link = self._links.get(sender)
        if kind == "offer":
            if link is not None and link.pc.signalingState == "have-local-offer":
                if not self._polite_towards(sender):
                    log.info("glare with %s: we are impolite, keeping our offer", sender)
                    return
                log.info("glare with %s: we are polite, answering theirs", sender)
            await self._answer(sender, sdp, nid)
        else:
            if link is None or link.pc.signalingState != "have-local-offer":
                log.info("ignored an answer from %s that matches no offer of ours", sender)
                return
            if isinstance(nid, int) and nid != link.generation:
                log.info("ignored an answer from %s to an older offer (%d)", sender, nid)
                return
            await link.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
            link.remote_description_set = True
            if self._has_ice_servers() and " typ srflx" not in sdp and " typ relay" not in sdp:
                # Nothing but host candidates from the peer: its servers did not answer
                # (its network is down, or it has none). Retry sooner if this fails.
                link.short_gathering = True
            self._compute_sas(link)
            await self._add_pending_candidates(link)

    def _has_ice_servers(self) -> bool:
        """Ours or the room server's (``welcome.ice_servers``)."""
        return bool(self.options.ice.servers or getattr(self._signaling, "ice_servers", ()))

    def _polite_towards(self, other: str) -> bool:
        return (self.peer_id or "") < other

    async def _on_candidate(self, sender: str, candidate: Any) -> None:
        link = self._links.get(sender)
        if link is None:
            return
        if candidate is None:
            return  # end of candidates: aiortc needs no signal for it
        if not isinstance(candidate, dict) or not isinstance(candidate.get("candidate"), str):
            raise ValueError("'candidate' must be an object with a 'candidate' string")
        if not link.remote_description_set:
            if len(link.pending_candidates) < 64:
                link.pending_candidates.append(candidate)
            return
        await self._add_candidate(link, candidate)

    async def _add_pending_candidates(self, link: _Link) -> None:
        pending, link.pending_candidates = link.pending_candidates, []
        for candidate in pending:
            try:
                await self._add_candidate(link, candidate)
            except (ValueError, TypeError) as exc:
                log.warning("ignored a bad candidate: %s", exc)

    @staticmethod
    async def _add_candidate(link: _Link, candidate: dict[str, Any]) -> None:
        line = candidate["candidate"].removeprefix("candidate:")
        if not line:
            return  # an empty candidate also means end of candidates
        parsed = candidate_from_sdp(line)
        mid, index = candidate.get("sdpMid"), candidate.get("sdpMLineIndex")
        parsed.sdpMid = mid if isinstance(mid, str) else None
        parsed.sdpMLineIndex = index if isinstance(index, int) else None
        if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
            parsed.sdpMLineIndex = 0
        await link.pc.addIceCandidate(parsed)

    # --------------------------------------------------------- media path state

    def _on_connection_state(self, link: _Link) -> None:
        if self._links.get(link.peer_id) is not link:
            return  # an old connection's last words
        state = link.pc.connectionState
        log.info("peer %s connection %d: %s", link.peer_id, link.generation, state)
        if state == "connected":
            link.connected_at = link.last_heard = time.monotonic()
            self.machine.feed(CallInput.MEDIA_CONNECTED)
        elif state == "failed":
            self._media_broken(link, "the media path failed")

    def _media_broken(self, link: _Link, reason: str) -> None:
        self.machine.feed(CallInput.MEDIA_BROKEN, reason)
        if link.offerer and not self._closed:
            log.info("rebuilding the connection to %s: %s", link.peer_id, reason)
            self._spawn(self._offer(link.peer_id), "rebuild")

    def _compute_sas(self, link: _Link) -> None:
        """Both descriptions are known: the code can be shown while the path comes up.

        It is computed before DTLS finishes on purpose: if someone rewrote a
        fingerprint, DTLS refuses the path, and the two different codes say why.
        """
        local, remote = link.pc.localDescription, link.pc.remoteDescription
        if local is None or remote is None:
            return
        try:
            link.sas = verification_code(local.sdp, remote.sdp)
        except SasError as exc:
            self.errors.append(str(exc))
            return
        self._sas = link.sas
        self._emit(SasReady(link.peer_id, link.sas))

    async def _watchdog(self) -> None:
        """Heartbeats out; a silent or stuck connection is rebuilt by its offerer; a
        silent peer is asked over signaling whether it is still there (liveness.py)."""
        interval = self.options.heartbeat_interval
        woke = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            now, slept = time.monotonic(), time.monotonic() - woke
            woke = now
            # Overslept (the process was suspended, the loop stalled): what arrived
            # meanwhile is still unread, so silence proves nothing yet. Judge next time.
            judge = slept < 3 * interval
            for link in list(self._links.values()):
                self._send_control(link, {"type": "hb"})
                if not judge:
                    continue
                live = self._liveness_of(link.peer_id)
                if link.connected_at is not None:
                    if now - link.last_heard > self.options.media_timeout:
                        link.connected_at = None
                        self._media_broken(link, "no heartbeat from the peer")
                elif (
                    link.offerer
                    and not live.unreachable  # rebuilt when it answers again
                    and now - link.created_at
                    > (
                        self.options.short_rebuild_timeout
                        if link.short_gathering
                        else self.options.rebuild_timeout
                    )
                ):
                    self._media_broken(link, "the connection did not come up")
                if self._links.get(link.peer_id) is not link:
                    continue  # replaced just now (rebuilt)
                verdict = live.tick(
                    now,
                    media_up=link.connected_at is not None,
                    signaling_up=self._signaling.state is ClientState.JOINED,
                )
                if verdict is Verdict.PROBE:
                    self._spawn(self._ping(link.peer_id), "ping")
                elif verdict is Verdict.UNREACHABLE:
                    name = self.peer_name(link.peer_id) or "the other person"
                    log.info("peer %s does not answer: waiting for it", link.peer_id)
                    if not any(other.connected_at for other in self._links.values()):
                        # (with others still connected, the call is not "waiting")
                        self.machine.feed(CallInput.PEER_UNREACHABLE, f"{name} is not responding")

    def _liveness_of(self, peer_id: str) -> PeerLiveness:
        live = self._liveness.get(peer_id)
        if live is None:
            live = self._liveness[peer_id] = PeerLiveness(
                time.monotonic(),
                probe_after=self.options.probe_after,
                answer_timeout=self.options.answer_timeout,
            )
        return live

    async def _ping(self, peer_id: str) -> None:
        with contextlib.suppress(SignalingClosed):
            await self._signaling.send_signal({"ping": next(self._pings)}, to=peer_id)
        # Before the peer is judged unreachable (answer_timeout from now), make sure it
        # is not our own network that is gone: a silent server connection is dropped
        # (signaling no longer up, so no verdict against the peer) and resumed.
        await self._signaling.check_connection(min(2.0, self.options.answer_timeout * 2 / 3))

    def _peer_reachable(self, peer_id: str) -> None:
        """An unreachable peer answered again (it resumed, or its network came back)."""
        log.info("peer %s answers again", peer_id)
        self.machine.feed(
            CallInput.PEER_REACHABLE, f"{self.peer_name(peer_id) or 'the other person'} is back"
        )
        link = self._links.get(peer_id)
        if link is not None and link.offerer and link.connected_at is None:
            # Our offer may be waiting in its queue: give it the full time to connect
            # before rebuilding (rebuilds were held while it did not answer).
            link.created_at = time.monotonic()

    async def _stats_loop(self) -> None:
        previous: dict[str, Any] = {}
        while True:
            await asyncio.sleep(self.options.stats_interval)
            link = next(iter(self._links.values()), None)
            if link is None or link.connected_at is None:
                continue
            try:
                report = await link.pc.getStats()
            except Exception as exc:  # a connection closing under us
                log.debug("getStats failed: %s", exc)
                continue
            summary = summarize(link.pc, report, previous, time.monotonic())
            self.last_stats = summary
            self._emit(summary)

    # ----------------------------------------------------------- control channel

    def _on_channel_open(self, link: _Link) -> None:
        self._send_control(link, {"type": "hello", "id": self.peer_id})
        message = {"type": "state", "muted": self.local_muted, "camera": self.local_camera}
        self._send_control(link, message)
        queued, link.control_outbox = link.control_outbox, []
        for message in queued:
            if message["type"] not in ("hello", "state"):  # those were just sent, fresh
                self._send_control(link, message)

    def _send_control(self, link: _Link, message: dict[str, Any]) -> None:
        """Send on the control channel; until it opens, keep what must not be lost."""
        channel = link.channel
        if channel is None or channel.readyState != "open":
            if message["type"] != "hb" and len(link.control_outbox) < CONTROL_OUTBOX_LIMIT:
                link.control_outbox.append(message)
            return
        try:
            channel.send(json.dumps(message))
        except Exception as exc:  # closing under us
            log.debug("control send failed: %s", exc)

    def _on_control(self, link: _Link, raw: Any) -> None:
        link.last_heard = time.monotonic()
        if self._liveness_of(link.peer_id).media(link.last_heard):
            self._peer_reachable(link.peer_id)
        if (
            link.connected_at is None
            and self._links.get(link.peer_id) is link
            and link.pc.connectionState == "connected"
        ):
            # Heard again on a path we had given up on (the peer was frozen, or only
            # our side saw the silence): it works, whether or not the offerer rebuilds.
            log.info("peer %s: connection %d works again", link.peer_id, link.generation)
            link.connected_at = link.last_heard
            self.machine.feed(CallInput.MEDIA_CONNECTED)
        if not isinstance(raw, str) or len(raw) > MAX_CONTROL_MESSAGE:
            log.warning("ignored a control message that is not short text")
            return
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("ignored a control message that is not JSON")
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "chat" and isinstance(message.get("text"), str):
            sent_at = message.get("sent_at")
            self._emit(
                ChatMessage(
                    link.peer_id,
                    message["text"][:MAX_CHAT_CHARS],
                    sent_at if isinstance(sent_at, int | float) else time.time(),
                )
            )
        elif kind == "state":
            muted, camera = message.get("muted"), message.get("camera")
            self._emit(
                RemoteControl(
                    link.peer_id,
                    muted=muted if isinstance(muted, bool) else None,
                    camera=camera if isinstance(camera, bool) else None,
                )
            )
        elif kind == "hello":
            new_id = message.get("id")
            if isinstance(new_id, str) and 0 < len(new_id) <= 64:
                self._rekey(link, new_id)
        elif kind == "bye":
            self._emit(RemoteControl(link.peer_id, hung_up=True))

    # ------------------------------------------------------------------- helpers

    def _emit(self, event: SessionEvent) -> None:
        for observer in list(self._observers):
            try:
                observer(event)
            except Exception:  # an observer's bug must not break the call
                log.exception("a call observer failed on %r", type(event).__name__)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=f"call-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call task %s failed", task.get_name(), exc_info=task.exception())
            self.errors.append(f"{task.get_name()}: {task.exception()}")


def _came_up_short(pc: RTCPeerConnection) -> bool:
    """Our description has no server-reflexive or relay candidate: with STUN/TURN
    servers configured, none of them answered while gathering (the network is down)."""
    description = pc.localDescription
    if description is None:
        return False
    return " typ srflx" not in description.sdp and " typ relay" not in description.sdp
