"""The JSON report of one call, shared by the headless mode and ``desktop-call --join``."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desktop_call.call.session import CallSession
from desktop_call.call.stats import StatsSummary
from desktop_call.media.sinks import AudioReceiver, CountingAudioSink, LatestFrameReceiver

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

__all__ = ["CallRecord", "call_report", "frame_timeline", "write_report"]

#: A wait between two video frames at least this long is listed as a stall.
STALL_MS = 250.0
MAX_TIMELINE_ENTRIES = 500


@dataclass
class CallRecord:
    """What happened when, from one side (monotonic times)."""

    started: float = field(default_factory=time.monotonic)
    started_at: float = field(default_factory=time.time)  # the same moment, wall clock
    connected: float | None = None
    first_frame: float | None = None
    states: list[str] = field(default_factory=list)
    last_stats: StatsSummary | None = None


def call_report(
    session: CallSession,
    record: CallRecord,
    video: Sequence[LatestFrameReceiver],
    audio: Sequence[AudioReceiver],
    audio_sink: CountingAudioSink | None = None,
    **extra: Any,
) -> dict[str, Any]:
    frames = sum(r.frames_received for r in video)
    firsts = [r.first_frame_at for r in video if r.first_frame_at]
    lasts = [r.last_frame_at for r in video if r.last_frame_at]
    fps = (frames - 1) / (max(lasts) - min(firsts)) if frames > 1 and lasts and firsts else 0.0
    latencies = sorted(x for r in video for x in r.latencies)
    audio_frames = sum(r.frames_received for r in audio)
    stats = record.last_stats or session.last_stats
    connected = record.connected is not None
    newest = next((r.latest for r in reversed(video) if r.latest is not None), None)
    frames_seen = frame_timeline(
        [t for r in video for t in r.arrival_log], record.started, fallback=video
    )
    origin = record.started
    return {
        "started_at": round(record.started_at, 3),
        "connected": connected,
        "media_both_ways": connected and frames > 0 and audio_frames > 0,
        "time_to_connected_ms": _ms(record.connected, record.started),
        "time_to_first_frame_ms": _ms(record.first_frame, record.started),
        # The first to join waits alone: from connected is the path's own figure.
        "connected_to_first_frame_ms": (
            _ms(record.first_frame, record.connected) if record.connected else None
        ),
        "video_frames_received": frames,
        "video_frames_dropped": sum(r.frames_dropped for r in video),
        "video_frames_missing": sum(r.frames_missing for r in video),
        "video_fps": round(fps, 2),
        "video_resolution": f"{newest.width}x{newest.height}" if newest is not None else None,
        **frames_seen,
        "video_receivers": [
            {
                "frames": r.frames_received,
                "first_frame_ms": _ms(r.first_frame_at, record.started_at),
                "max_frame_gap_ms": round(r.max_frame_gap * 1000, 1),
            }
            for r in video
        ],
        "audio_frames_received": audio_frames,
        "audio_dominant_hz": audio_sink.dominant_frequency() if audio_sink else None,
        "latency_ms": {
            "p50": _percentile(latencies, 0.50),
            "p95": _percentile(latencies, 0.95),
            "p99": _percentile(latencies, 0.99),
            "samples": len(latencies),
        },
        "sas": session.sas,
        "codec": stats.video_codec if stats else None,
        "audio_codec": stats.audio_codec if stats else None,
        "candidate_type": stats.candidate_type if stats else None,
        "remote_candidate_type": stats.remote_candidate_type if stats else None,
        "rtt_ms": stats.rtt_ms if stats else None,
        # RTP packets this side never received (cumulative, newest connection).
        "packets_lost_in": stats.packets_lost_in if stats else None,
        "states": record.states,
        "state_timeline": [
            {"t_ms": _ms(at, origin), "state": str(change.new), "reason": change.reason}
            for at, change in session.state_history[-MAX_TIMELINE_ENTRIES:]
        ],
        "signaling_timeline": [
            {"t_ms": _ms(at, origin), "event": event, "detail": detail}
            for at, event, detail in session.signaling_history[-MAX_TIMELINE_ENTRIES:]
        ],
        "final_state": str(session.state),
        "peer_id": session.peer_id,
        **extra,
        "cpu_seconds": round(time.process_time(), 3),
        "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss if resource else None,
        "pid": os.getpid(),
        "errors": list(session.errors),
    }


def write_report(report: dict[str, Any], destination: str | None) -> None:
    """To a file (written whole, then renamed into place), to stdout for '-', or nowhere."""
    text = json.dumps(report, indent=2)
    if destination == "-":
        print(text, flush=True)
    elif destination:
        path = Path(destination)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(path)


def frame_timeline(
    arrivals: Iterable[float],
    origin: float,
    *,
    stall_ms: float = STALL_MS,
    fallback: Sequence[LatestFrameReceiver] = (),
) -> dict[str, Any]:
    """What the picture did over the call, from frame arrival times (monotonic, any order,
    from every receiver of the call: a rebuilt connection's frames continue the story).

    - ``max_frame_gap_ms``: the longest wait between two frames after the first one,
      rebuilds included (without arrival times: the longest within one receiver);
    - ``video_stalls``: each wait of at least ``stall_ms``, when it began (``t_ms`` from
      ``origin``) and how long it lasted (``ms``);
    - ``video_fps_timeline``: frames received in each second since ``origin``.
    """
    times = sorted(arrivals)
    stalls: list[dict[str, float | None]] = []
    longest = 0.0
    for before, after in itertools.pairwise(times):
        gap = after - before
        longest = max(longest, gap)
        if gap * 1000 >= stall_ms and len(stalls) < MAX_TIMELINE_ENTRIES:
            stalls.append({"t_ms": _ms(before, origin), "ms": round(gap * 1000, 1)})
    if not times:
        longest = max((r.max_frame_gap for r in fallback), default=0.0)
    per_second = [0] * (int(times[-1] - origin) + 1 if times and times[-1] >= origin else 0)
    for at in times:
        if at >= origin:
            per_second[int(at - origin)] += 1
    return {
        "max_frame_gap_ms": round(longest * 1000, 1),
        "video_stalls": stalls,
        "video_fps_timeline": per_second,
    }


def _ms(at: float | None, start: float) -> float | None:
    return round((at - start) * 1000, 1) if at is not None else None


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    index = min(len(ordered) - 1, round(q * (len(ordered) - 1)))
    return round(ordered[index] * 1000, 2)
