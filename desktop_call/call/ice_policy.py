"""Two ICE behaviours of aiortc/aioice we change, per connection (no class is patched).

**Direct paths first.** aioice nominates aggressively: the controlling agent (aiortc's
offerer) puts USE-CANDIDATE on every connectivity check, so the first pair whose check
succeeds carries the call for its whole life (aiortc never switches pairs). A pair
through a TURN relay needs no hole punching and succeeds within a round trip, while a
direct pair between two NATs often loses its first check (the peer's NAT drops it until
the peer has sent towards us) and succeeds only on a triggered check or a
retransmission. On the network test bed (``tests/system/test_network_nat.py``, cone
NATs) a relay pair won that race in some runs although the direct path worked: every
packet of the call then took the detour through the TURN server. :func:`prefer_direct_paths`
makes the checks of pairs with a relay candidate (ours or the peer's) wait until
``hold`` seconds after the first of them was due, unless a direct pair has been
nominated by then, in which case they are dropped. Where only the relay works
(symmetric NATs, UDP blocked) the call connects ``hold`` later.

**Closing without the network.** Closing a connection deletes its TURN allocations,
and aioice waits for the server's answer through all its STUN retransmissions: 63.5 s
when the network is gone (7 tries, from 0.5 s doubling). On the test bed a rebuild that
closed the old connection during an outage stalled that long, and hanging up while
offline took over a minute. The server frees an allocation
anyway when its lifetime ends, so :func:`bound_turn_release` gives the deletion
``timeout`` seconds; aioice closes the socket whether or not it was answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any

from aiortc import RTCPeerConnection

from .ice import _gatherers

__all__ = ["HOLD", "TURN_RELEASE_TIMEOUT", "bound_turn_release", "prefer_direct_paths"]

#: Long enough for a direct pair's triggered check or first retransmission (aioice
#: retransmits after 0.5 s); short enough not to matter much when only TURN works.
HOLD = 1.0
TURN_RELEASE_TIMEOUT = 2.0


def prefer_direct_paths(pc: RTCPeerConnection, hold: float = HOLD) -> None:
    """Hold relay checks on ``pc``'s ICE connections (call before ``setLocalDescription``)."""
    for gatherer in _gatherers(pc):
        connection = gatherer._connection
        method = type(connection).check_start
        connection.check_start = functools.partial(_check_start, method, connection, hold)


async def _check_start(method: Any, connection: Any, hold: float, pair: Any) -> None:
    if connection.ice_controlling and "relay" in (
        pair.local_candidate.type,
        pair.remote_candidate.type,
    ):
        loop = asyncio.get_running_loop()
        deadline = getattr(connection, "_direct_first_deadline", None)
        if deadline is None:
            deadline = connection._direct_first_deadline = loop.time() + hold
        # In progress while held, so the pacing moves on to the other pairs.
        connection.check_state(pair, type(pair).State.IN_PROGRESS)
        if loop.time() < deadline:
            await asyncio.sleep(deadline - loop.time())
        if pair.component in connection._nominated:  # a direct pair won meanwhile
            connection.check_state(pair, type(pair).State.FAILED)
            return
    await method(connection, pair)


def bound_turn_release(pc: RTCPeerConnection, timeout: float = TURN_RELEASE_TIMEOUT) -> int:
    """Give each TURN allocation of ``pc`` at most ``timeout`` to be deleted when it
    closes (call before ``pc.close()``). Returns how many allocations it found."""
    found = 0
    for gatherer in _gatherers(pc):
        for protocol in getattr(gatherer._connection, "_protocols", ()):
            inner = getattr(protocol.transport, "_TurnTransport__inner_protocol", None)
            if inner is None or not hasattr(inner, "delete"):
                continue
            inner.delete = functools.partial(_bounded_delete, inner.delete, timeout)
            found += 1
    return found


async def _bounded_delete(delete: Any, limit: float) -> None:
    # aioice's delete() closes its transport in a finally block, cancelled or not.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit):
            await delete()
