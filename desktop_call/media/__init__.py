"""Sources and sinks of media frames (test pattern, camera, microphone, screen, speaker)."""
