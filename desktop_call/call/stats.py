"""Once a second, what a person (or a report) wants to know about the media path."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.sdp import SessionDescription

__all__ = ["StatsSummary", "candidate_pair", "candidate_type", "negotiated_codecs", "summarize"]


@dataclass(frozen=True, slots=True)
class StatsSummary:
    rtt_ms: float | None  # round trip, from the peer's receiver reports
    loss: float | None  # fraction of our packets the peer lost (0..1)
    bitrate_out_kbps: float
    bitrate_in_kbps: float
    packets_lost_in: int  # packets we did not receive, cumulative
    video_codec: str | None
    audio_codec: str | None
    candidate_type: str | None  # host / relay: our side of the pair (aioice pairs from bases)
    #: host / srflx / prflx / relay: the peer's side of the pair, as we know it.
    remote_candidate_type: str | None = None

    @property
    def relayed(self) -> bool:
        """Media goes through a TURN server (ours or the peer's)."""
        return "relay" in (self.candidate_type, self.remote_candidate_type)

    @property
    def quality(self) -> int:
        """0..4 bars, from RTT and loss, the way call apps show it."""
        if self.rtt_ms is None and self.loss is None:
            return 4 if self.bitrate_in_kbps > 0 else 0
        bars = 4
        rtt, loss = self.rtt_ms or 0.0, self.loss or 0.0
        if rtt > 150 or loss > 0.02:
            bars = 3
        if rtt > 300 or loss > 0.05:
            bars = 2
        if rtt > 600 or loss > 0.15:
            bars = 1
        return bars


def summarize(
    pc: RTCPeerConnection, report: Any, previous: dict[str, Any], now: float
) -> StatsSummary:
    """Turn one ``getStats()`` report into a summary; ``previous`` carries counters across calls."""
    bytes_out = bytes_in = 0
    lost_in = 0
    rtts: list[float] = []
    losses: list[float] = []
    for stats in report.values():
        kind = getattr(stats, "type", "")
        if kind == "transport":  # aiortc counts bytes per transport, not per inbound stream
            bytes_out += stats.bytesSent
            bytes_in += stats.bytesReceived
        elif kind == "inbound-rtp":
            lost_in += max(0, stats.packetsLost)
        elif kind == "remote-inbound-rtp":  # fields stay None until a report arrives
            if stats.roundTripTime is not None:
                rtts.append(stats.roundTripTime)
            if stats.fractionLost is not None:
                losses.append(stats.fractionLost)
    elapsed = now - previous.get("at", now)
    out_kbps = in_kbps = 0.0
    if elapsed > 0:
        out_kbps = (bytes_out - previous.get("out", bytes_out)) * 8 / elapsed / 1000
        in_kbps = (bytes_in - previous.get("in", bytes_in)) * 8 / elapsed / 1000
    previous.update(at=now, out=bytes_out, **{"in": bytes_in})
    codecs = negotiated_codecs(pc)
    local_type, remote_type = candidate_pair(pc)
    return StatsSummary(
        rtt_ms=max(rtts) * 1000 if rtts else None,
        loss=max(losses) if losses else None,
        bitrate_out_kbps=max(0.0, out_kbps),
        bitrate_in_kbps=max(0.0, in_kbps),
        packets_lost_in=lost_in,
        video_codec=codecs.get("video"),
        audio_codec=codecs.get("audio"),
        candidate_type=local_type,
        remote_candidate_type=remote_type,
    )


def negotiated_codecs(pc: RTCPeerConnection) -> dict[str, str]:
    """The codec of each media kind in the remote description (the first one wins)."""
    description = pc.remoteDescription
    if description is None:
        return {}
    found: dict[str, str] = {}
    with contextlib.suppress(ValueError, AttributeError):
        for media in SessionDescription.parse(description.sdp).media:
            if media.kind in ("audio", "video") and media.rtp.codecs and media.port:
                found.setdefault(media.kind, media.rtp.codecs[0].mimeType.split("/")[-1])
    return found


def candidate_type(pc: RTCPeerConnection) -> str | None:
    """Our candidate type on the nominated ICE pair (aiortc keeps it inside aioice)."""
    return candidate_pair(pc)[0]


def candidate_pair(pc: RTCPeerConnection) -> tuple[str | None, str | None]:
    """(ours, the peer's) candidate types on the nominated ICE pair.

    aioice checks from its bases, so our side is ``host`` or ``relay``; a path through
    NATs shows on the peer's side as ``srflx`` (it told us) or ``prflx`` (we learnt it
    from its checks). Either side ``relay``: the media goes through a TURN server.
    With bundling all media share one ICE transport; the data channel's is the fallback.
    """
    transports = [t.sender.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    for dtls in transports:
        if dtls is None:
            continue
        connection = getattr(dtls.transport, "_connection", None)
        nominated = getattr(connection, "_nominated", None) or {}
        for pair in nominated.values():
            return pair.local_candidate.type, pair.remote_candidate.type
    return None, None
