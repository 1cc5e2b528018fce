"""The verification code: equal on both ends, different under a rewritten fingerprint."""

import re

import pytest

from desktop_call.call.sas import SasError, fingerprints_from_sdp, verification_code


def sdp(fingerprint: str, algorithm: str = "sha-256") -> str:
    return (
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        f"a=fingerprint:{algorithm} {fingerprint}\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        f"a=fingerprint:{algorithm} {fingerprint}\r\n"
    )


A = ":".join(["AB"] * 32)
B = ":".join(["12"] * 32)
M = ":".join(["EE"] * 32)


def test_fingerprints_are_normalised_and_deduplicated():
    assert fingerprints_from_sdp(sdp(A.lower(), "SHA-256")) == [f"sha-256 {A}"]


def test_both_sides_compute_the_same_code():
    code = verification_code(sdp(A), sdp(B))
    assert re.fullmatch(r"\d{3} \d{3}", code)
    assert verification_code(sdp(B), sdp(A)) == code


def test_a_rewritten_fingerprint_changes_each_sides_code():
    # The attacker shows A the fingerprint M instead of B, and B the fingerprint M for A.
    alice_sees = verification_code(sdp(A), sdp(M))
    bob_sees = verification_code(sdp(B), sdp(M))
    honest = verification_code(sdp(A), sdp(B))
    assert alice_sees != honest
    assert bob_sees != honest
    assert alice_sees != bob_sees


def test_codes_spread_over_the_space():
    codes = {verification_code(sdp(f"{n:064X}"[:64]), sdp(B)) for n in range(2000)}
    assert len(codes) > 1990


@pytest.mark.parametrize("broken", ["", "v=0\r\n", "a=fingerprint:sha-256\r\n"])
def test_no_fingerprint_is_an_error(broken):
    with pytest.raises(SasError):
        verification_code(broken, sdp(B))
