#!/usr/bin/env python3
"""The media benchmark's baseline: raw aiortc, two peer connections in ONE process.

    python bench/_media_baseline.py --resolution 640x480 --codec VP8 --duration 30 --report F

Each peer sends what the headless app sends (``TestPatternTrack`` at the same size and frame
rate plus a 440 Hz ``ToneTrack``) and reads what arrives with the same receivers
(``LatestFrameReceiver`` for video, so latency comes from the same stamps, and an
``AudioReceiver`` into a ``CountingAudioSink``).  What it leaves out is everything of ours:
no room server, no signaling (offer and answer are handed over in-process), no
``MediaRelay``/``SwitchableTrack`` between source and sender, no control data channel, no
heartbeats and no stats loop.  The codec is forced the way the app forces it:
``transceiver.setCodecPreferences([codec] + rtx)`` on both sides.  ``iceServers=[]``, like
``--ice-servers none``: host candidates only (aioice skips loopback, so both this and the
headless processes pair the machine's own interface address; the packets never leave it).

``--as-app`` (a diagnostic, not used by ``bench/media.py``'s default run) puts the app's own
layers between source and sender, as ``CallSession`` does: ``SwitchableTrack`` ->
``MediaRelay.subscribe(buffered=False)`` -> ``addTrack``, and a negotiated data channel with a
1 Hz heartbeat, to tell their cost apart from the cost of a second process.

stdout carries the same progress lines as the headless CLI (``state: connected`` once both
connections are up, ``state: ended`` after the media phase), so ``bench/media.py`` times its
/proc samples the same way for both; the JSON report (one object per direction under
``sides``, with the headless report's keys) goes to ``--report``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.sdp import SessionDescription

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from desktop_call.media.sinks import AudioReceiver, CountingAudioSink, LatestFrameReceiver
from desktop_call.media.sources import TestPatternTrack, ToneTrack
from desktop_call.media.stamp import read_stamp
from desktop_call.media.switchable import SwitchableTrack


class Peer:
    def __init__(
        self, name: str, width: int, height: int, fps: float, codec: str, as_app: bool = False
    ) -> None:
        self.name = name
        self.codec = codec
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.video_up = TestPatternTrack(width, height, fps)
        self.audio_up = ToneTrack(440.0)
        self.as_app = as_app
        self.sent: list[Any] = [self.audio_up, self.video_up]
        if as_app:
            relay = MediaRelay()
            video = SwitchableTrack("video", self.video_up, off_size=(width, height))
            audio = SwitchableTrack("audio", self.audio_up)
            self.sent = [
                relay.subscribe(audio, buffered=False),
                relay.subscribe(video, buffered=False),
            ]
            self.sent += [video, audio]  # stopped on close
        self.video_receivers: list[LatestFrameReceiver] = []
        self.audio_receivers: list[AudioReceiver] = []
        self.audio_sink = CountingAudioSink()
        self.first_frame: float | None = None
        self.first_frame_number: int | None = None  # its stamp: 0 unless frames were lost
        self.connected: float | None = None
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    def add_tracks(self) -> None:
        # audio first, then video: the order CallSession adds its tracks in
        self.pc.addTrack(self.sent[0])
        self.pc.addTrack(self.sent[1])
        if self.as_app:
            channel = self.pc.createDataChannel("control", negotiated=True, id=0)
            self.channel = channel

    def force_codec(self) -> None:
        capabilities = RTCRtpSender.getCapabilities("video").codecs
        wanted = f"video/{self.codec.lower()}"
        preferred = [c for c in capabilities if c.mimeType.lower() == wanted]
        if not preferred:
            raise SystemExit(f"this build of aiortc cannot send {self.codec}")
        rtx = [c for c in capabilities if c.mimeType.lower() == "video/rtx"]
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == "video":
                transceiver.setCodecPreferences(preferred + rtx)

    def _on_state(self) -> None:
        if self.pc.connectionState == "connected" and self.connected is None:
            self.connected = time.monotonic()

    def _on_track(self, track: Any) -> None:
        if track.kind == "video":
            receiver = LatestFrameReceiver(
                track, on_frame=lambda frame: None, latency_samples=108_000
            )
            self.video_receivers.append(receiver)
            receiver.start()
            asyncio.get_running_loop().create_task(self._watch_first_frame(receiver))
        else:
            audio = AudioReceiver(track, self.audio_sink)
            self.audio_receivers.append(audio)
            audio.start()

    async def _watch_first_frame(self, receiver: LatestFrameReceiver) -> None:
        with contextlib.suppress(Exception):
            await receiver.wait_for(lambda: receiver.frames_received > 0)
            if self.first_frame is None:
                self.first_frame = time.monotonic()
                stamp = read_stamp(receiver.latest) if receiver.latest is not None else None
                self.first_frame_number = stamp.frame_number if stamp else None

    def negotiated_codecs(self) -> dict[str, str]:
        found: dict[str, str] = {}
        description = self.pc.remoteDescription
        if description is None:
            return found
        for media in SessionDescription.parse(description.sdp).media:
            if media.kind in ("audio", "video") and media.rtp.codecs and media.port:
                found.setdefault(media.kind, media.rtp.codecs[0].mimeType.split("/")[-1])
        return found

    def report(self, started: float) -> dict[str, Any]:
        # The same arithmetic as desktop_call/headless.py's report, so both compare.
        video = self.video_receivers
        frames = sum(r.frames_received for r in video)
        firsts = [r.first_frame_at for r in video if r.first_frame_at]
        lasts = [r.last_frame_at for r in video if r.last_frame_at]
        fps = (frames - 1) / (max(lasts) - min(firsts)) if frames > 1 and lasts and firsts else 0.0
        latencies = sorted(x for r in video for x in r.latencies)
        newest = next((r.latest for r in reversed(video) if r.latest is not None), None)
        codecs = self.negotiated_codecs()
        audio_frames = sum(r.frames_received for r in self.audio_receivers)
        return {
            "name": self.name,
            "connected": self.connected is not None,
            "media_both_ways": self.connected is not None and frames > 0 and audio_frames > 0,
            "time_to_connected_ms": _ms(self.connected, started),
            "time_to_first_frame_ms": _ms(self.first_frame, started),
            "first_frame_number": self.first_frame_number,
            "video_frames_received": frames,
            "video_frames_dropped": sum(r.frames_dropped for r in video),
            "video_frames_missing": sum(r.frames_missing for r in video),
            "video_fps": round(fps, 2),
            "video_resolution": f"{newest.width}x{newest.height}" if newest is not None else None,
            "audio_frames_received": audio_frames,
            "audio_dominant_hz": self.audio_sink.dominant_frequency(),
            "latency_ms": {
                "p50": _percentile(latencies, 0.50),
                "p95": _percentile(latencies, 0.95),
                "p99": _percentile(latencies, 0.99),
                "samples": len(latencies),
            },
            "codec": codecs.get("video"),
            "audio_codec": codecs.get("audio"),
        }

    async def close(self) -> None:
        for receiver in [*self.video_receivers, *self.audio_receivers]:
            await receiver.close()
        for track in {*self.sent, self.video_up, self.audio_up}:
            track.stop()
        await self.pc.close()


async def _heartbeats(peers: list[Peer], duration: float) -> None:
    """What the session's watchdog sends: one small JSON message a second on each side."""
    end = time.monotonic() + duration
    while (left := end - time.monotonic()) > 0:
        await asyncio.sleep(min(1.0, left))
        for peer in peers:
            if peer.channel.readyState == "open":
                peer.channel.send(json.dumps({"type": "hb"}))


def _ms(at: float | None, start: float) -> float | None:
    return round((at - start) * 1000, 1) if at is not None else None


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    index = min(len(ordered) - 1, round(q * (len(ordered) - 1)))
    return round(ordered[index] * 1000, 2)


async def run(args: argparse.Namespace) -> int:
    width, height = (int(x) for x in args.resolution.lower().split("x"))
    started = time.monotonic()
    a = Peer("A", width, height, args.fps, args.codec, args.as_app)
    b = Peer("B", width, height, args.fps, args.codec, args.as_app)
    status = 0
    try:
        print("state: joining", flush=True)
        a.add_tracks()
        a.force_codec()
        await a.pc.setLocalDescription(await a.pc.createOffer())
        await b.pc.setRemoteDescription(
            RTCSessionDescription(sdp=a.pc.localDescription.sdp, type="offer")
        )
        b.add_tracks()  # reuses the offered transceivers, as an answerer does
        b.force_codec()
        await b.pc.setLocalDescription(await b.pc.createAnswer())
        await a.pc.setRemoteDescription(
            RTCSessionDescription(sdp=b.pc.localDescription.sdp, type="answer")
        )
        deadline = time.monotonic() + args.connect_timeout
        while a.connected is None or b.connected is None:
            if time.monotonic() > deadline:
                print("baseline: did not connect", file=sys.stderr, flush=True)
                status = 2
                break
            await asyncio.sleep(0.005)
        if status == 0:
            print("state: connected", flush=True)
            if args.as_app:
                await _heartbeats([a, b], args.duration)
            else:
                await asyncio.sleep(args.duration)
    finally:
        reports = [a.report(started), b.report(started)]
        await a.close()
        await b.close()
        print("state: ended", flush=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "sides": reports,
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "max_rss_kb": usage.ru_maxrss,
        "pid": os.getpid(),
    }
    text = json.dumps(report, indent=2)
    if args.report:
        path = Path(args.report)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(path)
    else:
        print(text)
    if status:
        return status
    return 0 if all(r["media_both_ways"] for r in reports) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", default="640x480")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--codec", choices=("VP8", "H264"), type=str.upper, default="VP8")
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--connect-timeout", type=float, default=30.0)
    ap.add_argument("--report")
    ap.add_argument("--as-app", action="store_true", help="diagnostic: the app's track layers")
    args = ap.parse_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
