"""Calls through NATs (tests/system/netbed.py): two hosts on different private networks,
each behind its own NAT, a room server and coturn on the "internet" between them.

- Port-restricted cone NATs (plain MASQUERADE): hole punching works, so the call must
  take a direct path (our host candidate to the peer's server-reflexive or
  peer-reflexive one), not the TURN relay it was also offered.
- Symmetric NATs (MASQUERADE --random-fully): every destination gets a new public
  port, the reflexive candidates are useless, and only the relay can carry the call.

Both sides' reports give the nominated pair's candidate types, ours and the peer's.
Needs root, iproute2, iptables and coturn; skipped with the reason otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netbed import build, end_call, netbed_problem, start_call, watch_states

pytestmark = [
    pytest.mark.skipif(netbed_problem() is not None, reason=f"{netbed_problem()}"),
    pytest.mark.timeout(120),
]

CALL_SECONDS = 4  # of media, after both sides connected


def pair(report: dict) -> tuple[str | None, str | None]:
    return report["candidate_type"], report["remote_candidate_type"]


async def call_through(nat: str, workdir: Path) -> list[dict]:
    async with build(nat, workdir) as bed:
        a, b = await start_call(bed)
        broke = await watch_states(a, b, seconds=CALL_SECONDS)
        assert broke is None, f"the call did not stay connected: {broke.text}"
        reports = await end_call(a, b)
        for peer in (a, b):
            assert peer.proc.returncode == 0, peer.proc.tail()
        return reports


async def test_cone_nats_connect_directly(tmp_path):
    reports = await call_through("cone", tmp_path)
    for report in reports:
        assert report["media_both_ways"], report
        assert report["video_frames_received"] > 60 and report["audio_frames_received"] > 100
        local, remote = pair(report)
        # Direct: nobody relays, and the path crossed the NATs (the peer's side is its
        # public mapping, learnt from STUN or from its checks).
        assert "relay" not in (local, remote), pair(report)
        assert local == "host" and remote in ("srflx", "prflx"), pair(report)
    print(
        "cone:",
        [(r["time_to_connected_ms"], r["connected_to_first_frame_ms"], pair(r)) for r in reports],
    )


async def test_symmetric_nats_connect_through_the_relay(tmp_path):
    reports = await call_through("symmetric", tmp_path)
    for report in reports:
        assert report["media_both_ways"], report
        assert report["video_frames_received"] > 60 and report["audio_frames_received"] > 100
        assert "relay" in pair(report), pair(report)
    print(
        "symmetric:",
        [(r["time_to_connected_ms"], r["connected_to_first_frame_ms"], pair(r)) for r in reports],
    )
