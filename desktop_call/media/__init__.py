"""Sources and sinks of media frames (test pattern, camera, microphone, screen, speaker).

- :mod:`.sources`: tracks that produce media (test pattern, tone, silence, file) and the
  :class:`~.sources.MediaSource` interface that camera, microphone and screen implement.
- :mod:`.switchable`: the sender-side track whose source is swapped, muted or switched off
  without renegotiation.
- :mod:`.sinks`: the receive side (video drained to the newest frame, audio sinks).
- :mod:`.stamp`: the frame number and capture time drawn into test-pattern frames.

Nothing here imports Qt or websockets; Qt capture and playback live in their own modules.
"""

from .sinks import (
    AudioReceiver,
    AudioSink,
    CountingAudioSink,
    LatestFrameReceiver,
    audio_to_mono,
    dominant_frequency,
)
from .sources import (
    AudioSource,
    FileTrack,
    MediaSource,
    Pacer,
    SilenceTrack,
    TestPattern,
    TestPatternTrack,
    ToneTrack,
    TrackSource,
    VideoSource,
    file_source,
    pattern_source,
    tone_source,
)
from .stamp import Stamp, read_stamp
from .switchable import SwitchableTrack, black_frame, silence_frame

__all__ = [
    "AudioReceiver",
    "AudioSink",
    "AudioSource",
    "CountingAudioSink",
    "FileTrack",
    "LatestFrameReceiver",
    "MediaSource",
    "Pacer",
    "SilenceTrack",
    "Stamp",
    "SwitchableTrack",
    "TestPattern",
    "TestPatternTrack",
    "ToneTrack",
    "TrackSource",
    "VideoSource",
    "audio_to_mono",
    "black_frame",
    "dominant_frequency",
    "file_source",
    "pattern_source",
    "read_stamp",
    "silence_frame",
    "tone_source",
]
