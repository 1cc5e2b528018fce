"""The JSON report of one call, shared by the headless mode and ``desktop-call --join``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
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

__all__ = ["CallRecord", "call_report", "write_report"]


@dataclass
class CallRecord:
    """What happened when, from one side (monotonic times)."""

    started: float = field(default_factory=time.monotonic)
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
    return {
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
        "rtt_ms": stats.rtt_ms if stats else None,
        "states": record.states,
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


def _ms(at: float | None, start: float) -> float | None:
    return round((at - start) * 1000, 1) if at is not None else None


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    index = min(len(ordered) - 1, round(q * (len(ordered) - 1)))
    return round(ordered[index] * 1000, 2)
