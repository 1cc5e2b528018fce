"""``desktop-call --headless``: a call with no window, for bots, tests and benchmarks.

It joins (or creates) a call, sends synthetic media or a file, counts what arrives,
and writes a JSON report. Exit status 0 means: the call connected and media flowed
both ways (remote video and audio frames arrived while the peer received ours, as
far as one side can tell: our frames were sent over a connected path and theirs
arrived). Anything else exits non-zero with a plain message.

On stdout, one line per event, flushed (tests and scripts wait on them): the call link
(``--create``), ``state: <state> (<reason>)`` on every state change, and
``video: frames arriving`` when the first frame of each (rebuilt) connection arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiortc import MediaStreamTrack

from desktop_call.call.ice import IceConfig, InvalidIceConfig, parse_ice_servers
from desktop_call.call.session import (
    CallOptions,
    CallSession,
    RemoteTrack,
    SessionEvent,
)
from desktop_call.call.state import CallState, StateChange
from desktop_call.call.stats import StatsSummary
from desktop_call.media.sinks import AudioReceiver, CountingAudioSink, LatestFrameReceiver
from desktop_call.media.sources import FileTrack, TestPatternTrack, ToneTrack
from desktop_call.media.switchable import SwitchableTrack
from desktop_call.report import CallRecord, call_report, write_report
from desktop_call.server import RoomServer, ServerConfig
from desktop_call.signaling.ids import (
    DEFAULT_PORT,
    InvalidCallTarget,
    make_call_link,
    new_call_id,
    parse_call_target,
    parse_server_url,
)

__all__ = ["add_arguments", "run"]

log = logging.getLogger("desktop_call.headless")

DEFAULT_SERVER = f"ws://127.0.0.1:{DEFAULT_PORT}"
EXIT_OK, EXIT_NO_MEDIA, EXIT_FAILED, EXIT_USAGE = 0, 1, 2, 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the headless mode only (the call options are the app's: see __main__)."""
    group = parser.add_argument_group("headless calls (--headless)")
    group.add_argument("--resolution", default="640x480", metavar="WxH", help="default 640x480")
    group.add_argument("--fps", type=float, default=30.0, help="test pattern frame rate")
    group.add_argument("--codec", choices=("VP8", "H264"), type=str.upper, help="video codec")
    group.add_argument(
        "--ice-servers",
        default="default",
        metavar="default|none|URL,...",
        help="STUN/TURN servers (default: Google's public STUN)",
    )
    group.add_argument("--turn-username", help="username for turn:/turns: servers")
    group.add_argument("--turn-credential", help="credential for turn:/turns: servers")
    group.add_argument("--relay-only", action="store_true", help="only relay (TURN) candidates")
    group.add_argument(
        "--connect-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the call to connect (default 60)",
    )


@dataclass
class _Media:
    """What we send, and what we have received so far (across rebuilt connections)."""

    video: SwitchableTrack
    audio: SwitchableTrack
    upstreams: list[MediaStreamTrack]
    video_receivers: list[LatestFrameReceiver] = field(default_factory=list)
    audio_receivers: list[AudioReceiver] = field(default_factory=list)
    audio_sink: CountingAudioSink = field(default_factory=CountingAudioSink)

    def on_remote_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            # Nothing paints here: every newest frame counts as shown, so "dropped"
            # means drained behind a newer one, as it would in the window.
            # Every latency sample and arrival time of the call (30 fps x 1 h: a few MB).
            receiver = LatestFrameReceiver(
                track, on_frame=_shown, latency_samples=108_000, keep_arrivals=108_000
            )
            self.video_receivers.append(receiver)
        else:
            receiver = AudioReceiver(track, self.audio_sink)
            self.audio_receivers.append(receiver)
        receiver.start()

    async def close(self) -> None:
        for receiver in [*self.video_receivers, *self.audio_receivers]:
            await receiver.close()
        for track in (self.video, self.audio, *self.upstreams):
            track.stop()
        self.audio_sink.close()


def _shown(frame: object) -> None:
    """A frame handed on: the headless mode has no screen to paint it on."""


def _parse_resolution(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--resolution {text!r} is not WxH (like 1280x720)") from None
    if not (16 <= width <= 7680 and 16 <= height <= 4320) or width % 2 or height % 2:
        raise ValueError(f"--resolution {text!r}: use even sizes from 16x16 to 7680x4320")
    return width, height


def _build_media(source: str, resolution: str, fps: float) -> _Media:
    width, height = _parse_resolution(resolution)
    if not 1 <= fps <= 120:
        raise ValueError("--fps must be between 1 and 120")
    kind, _, argument = source.partition(":")
    upstreams: list[MediaStreamTrack]
    if kind == "testpattern":
        video_up: MediaStreamTrack | None = TestPatternTrack(width, height, fps)
        audio_up: MediaStreamTrack | None = ToneTrack(440.0)
    elif kind == "tone":
        video_up, audio_up = None, ToneTrack(440.0)
    elif kind == "file" and argument:
        path = Path(argument).expanduser()
        if not path.is_file():
            raise ValueError(f"--source file:{argument}: no such file")
        video_up = _optional_file_track(path, "video")
        audio_up = _optional_file_track(path, "audio")
        if video_up is None and audio_up is None:
            raise ValueError(f"--source file:{argument}: no audio or video stream in it")
    else:
        raise ValueError(f"--source {source!r}: use testpattern, tone or file:PATH")
    upstreams = [t for t in (video_up, audio_up) if t is not None]
    # Switchable tracks: black or silence stand in for a missing kind, so a call
    # always carries both, and mute or camera-off never renegotiates.
    video = SwitchableTrack("video", video_up, off_size=(width, height))
    audio = SwitchableTrack("audio", audio_up)
    return _Media(video, audio, upstreams)


def _optional_file_track(path: Path, kind: str) -> FileTrack | None:
    try:
        return FileTrack(path, kind, loop=True)  # type: ignore[arg-type]
    except ValueError:
        return None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None


async def run(args: argparse.Namespace) -> int:
    """Run one headless call from parsed arguments; returns the exit status."""
    args.name = args.name if args.name is not None else "headless"
    args.source = args.source or "testpattern"
    args.host = args.host or "127.0.0.1"
    args.port = DEFAULT_PORT if args.port is None else args.port
    try:
        media = _build_media(args.source, args.resolution, args.fps)
        servers = parse_ice_servers(
            args.ice_servers, username=args.turn_username, credential=args.turn_credential
        )
        ice = IceConfig(servers=servers, relay_only=args.relay_only)
    except (ValueError, InvalidIceConfig) as exc:
        print(f"desktop-call: {exc}", file=sys.stderr)
        return EXIT_USAGE

    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(media.close)
        try:
            room_url, link = await _resolve_room(args, stack)
        except (InvalidCallTarget, OSError) as exc:
            print(f"desktop-call: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if link:
            print(f"Call link: {link}", flush=True)
        options = CallOptions(room_url, args.name, args.token, ice=ice, video_codec=args.codec)
        session = CallSession(options, video=media.video, audio=media.audio)
        timeline = CallRecord()
        session.subscribe(lambda event: _observe(event, media, timeline))
        try:
            await session.start()
            status = await _run_call(session, args, timeline)
        finally:
            await session.hang_up()
        report = call_report(
            session,
            timeline,
            media.video_receivers,
            media.audio_receivers,
            media.audio_sink,
            name=args.name,
            source=args.source,
        )
    write_report(report, args.report)
    if status != EXIT_OK:
        return status
    if not report["media_both_ways"]:
        print("desktop-call: connected, but media did not flow both ways", file=sys.stderr)
        return EXIT_NO_MEDIA
    return EXIT_OK


async def _resolve_room(
    args: argparse.Namespace, stack: contextlib.AsyncExitStack
) -> tuple[str, str | None]:
    if args.create:
        call_id = new_call_id()
        if args.server:
            server_url = parse_server_url(args.server)
        else:  # host the room server ourselves, like the app's default
            server = await stack.enter_async_context(
                RoomServer(ServerConfig(host=args.host, port=args.port))
            )
            server_url = server.url
        return f"{server_url}/rooms/{call_id}", make_call_link(server_url, call_id)
    target = parse_call_target(args.join)
    default = parse_server_url(args.server) if args.server else DEFAULT_SERVER
    return target.room_url(default), None


def _observe(event: SessionEvent, media: _Media, timeline: CallRecord) -> None:
    now = time.monotonic()
    if isinstance(event, StateChange):
        timeline.states.append(str(event.new))
        if event.new is CallState.CONNECTED and timeline.connected is None:
            timeline.connected = now
        print(f"state: {event.new}{f' ({event.reason})' if event.reason else ''}", flush=True)
    elif isinstance(event, RemoteTrack):
        media.on_remote_track(event.track)
        if event.track.kind == "video":
            _watch_first_frame(media.video_receivers[-1], timeline)
    elif isinstance(event, StatsSummary):
        timeline.last_stats = event


def _watch_first_frame(receiver: LatestFrameReceiver, timeline: CallRecord) -> None:
    async def wait() -> None:
        with contextlib.suppress(Exception):
            await receiver.wait_for(lambda: receiver.frames_received > 0)
            if timeline.first_frame is None:
                timeline.first_frame = time.monotonic()
            print("video: frames arriving", flush=True)  # for each (rebuilt) connection

    task = asyncio.get_running_loop().create_task(wait())
    _background.add(task)
    task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()


async def _run_call(session: CallSession, args: argparse.Namespace, timeline: CallRecord) -> int:
    try:
        async with asyncio.timeout(args.connect_timeout):
            state = await session.wait_for(lambda s: s is CallState.CONNECTED)
    except TimeoutError:
        print(
            f"desktop-call: the call did not connect within {args.connect_timeout:g} s "
            f"(last state: {session.state})",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if state is not CallState.CONNECTED:
        print(f"desktop-call: the call {state}: {session.machine.reason}", file=sys.stderr)
        return EXIT_FAILED
    stop = asyncio.Event()  # SIGINT/SIGTERM: hang up cleanly and still write the report
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    ended = asyncio.ensure_future(session.wait_for(lambda s: s.final))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({ended, stopped}, timeout=args.duration, return_when="FIRST_COMPLETED")
    finally:
        for waiter in (ended, stopped):
            waiter.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
    if session.state is CallState.FAILED:
        print(f"desktop-call: the call failed: {session.machine.reason}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
