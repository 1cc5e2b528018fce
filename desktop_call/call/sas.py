"""The verification code (SAS): six digits both people can read to each other.

DTLS protects the media with certificates whose fingerprints travel in the SDP,
through the room server. aiortc checks that the certificate the peer presents in
the DTLS handshake matches the fingerprint in the remote SDP, so the pair
(our fingerprint, the fingerprint the peer's DTLS proved) names the two ends of
the encrypted path. Both sides hash that pair, sorted, into the same code.

Anyone in the signaling path who rewrites a fingerprint to sit in the middle has
to run two DTLS sessions with two different certificates; each side then hashes a
different pair and the codes differ. Six digits give a one-in-a-million chance
for a fixed forgery; an attacker who grinds certificates to match codes must do
it while the call is being set up (see docs/architecture.md).
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["SasError", "fingerprints_from_sdp", "verification_code"]

_DOMAIN = b"desktop-call verification code v1\n"
_FINGERPRINT_RE = re.compile(r"^a=fingerprint:(\S+)\s+([0-9A-Fa-f:]+)\s*$", re.MULTILINE)


class SasError(ValueError):
    """No usable fingerprint: the code cannot be computed."""


def fingerprints_from_sdp(sdp: str) -> list[str]:
    """Every ``a=fingerprint`` of an SDP, normalised to ``"sha-256 AB:CD:…"``, deduplicated."""
    seen: dict[str, None] = {}
    for algorithm, value in _FINGERPRINT_RE.findall(sdp):
        seen[f"{algorithm.lower()} {value.upper()}"] = None
    return list(seen)


def verification_code(local_sdp: str, remote_sdp: str) -> str:
    """The six-digit code for a call between these two descriptions, as ``"123 456"``."""
    local, remote = fingerprints_from_sdp(local_sdp), fingerprints_from_sdp(remote_sdp)
    if not local or not remote:
        raise SasError("a description carries no DTLS fingerprint")
    material = "\n".join(sorted([",".join(sorted(local)), ",".join(sorted(remote))]))
    digest = hashlib.sha256(_DOMAIN + material.encode()).digest()
    number = int.from_bytes(digest[:8], "big") % 1_000_000
    return f"{number // 1000:03d} {number % 1000:03d}"
