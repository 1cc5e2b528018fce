"""The call state machine, as a table."""

import pytest

from desktop_call.call.state import CallInput, CallState, CallStateMachine, StateChange

S, I = CallState, CallInput  # noqa: E741


def run(*inputs: CallInput) -> CallStateMachine:
    machine = CallStateMachine()
    for cause in inputs:
        machine.feed(cause)
    return machine


@pytest.mark.parametrize(
    ("inputs", "final"),
    [
        ((), S.IDLE),
        ((I.JOIN,), S.JOINING),
        ((I.JOIN, I.WELCOMED_ALONE), S.WAITING),
        ((I.JOIN, I.WELCOMED_WITH_PEERS), S.CONNECTING),
        ((I.JOIN, I.WELCOMED_ALONE, I.PEER_JOINED), S.CONNECTING),
        ((I.JOIN, I.WELCOMED_ALONE, I.PEER_JOINED, I.MEDIA_CONNECTED), S.CONNECTED),
        ((I.JOIN, I.WELCOMED_WITH_PEERS, I.MEDIA_CONNECTED, I.MEDIA_BROKEN), S.RECONNECTING),
        (
            (I.JOIN, I.WELCOMED_WITH_PEERS, I.MEDIA_CONNECTED, I.MEDIA_BROKEN, I.MEDIA_CONNECTED),
            S.CONNECTED,
        ),
        ((I.JOIN, I.WELCOMED_WITH_PEERS, I.MEDIA_CONNECTED, I.PEER_LEFT), S.WAITING),
        (
            (I.JOIN, I.WELCOMED_WITH_PEERS, I.MEDIA_CONNECTED, I.PEER_LEFT, I.PEER_JOINED),
            S.CONNECTING,
        ),
        ((I.JOIN, I.WELCOMED_WITH_PEERS, I.MEDIA_BROKEN, I.PEER_LEFT), S.WAITING),
        ((I.JOIN, I.WELCOMED_WITH_PEERS, I.MEDIA_CONNECTED, I.REBUILDING), S.RECONNECTING),
        # The other person stops answering (killed, asleep, offline): alone again ...
        (
            (I.JOIN, I.WELCOMED_WITH_PEERS, I.MEDIA_CONNECTED, I.MEDIA_BROKEN, I.PEER_UNREACHABLE),
            S.WAITING,
        ),
        ((I.JOIN, I.WELCOMED_WITH_PEERS, I.PEER_UNREACHABLE), S.WAITING),
        # ... until they answer again (they resumed) and the path comes back,
        (
            (
                I.JOIN,
                I.WELCOMED_WITH_PEERS,
                I.MEDIA_CONNECTED,
                I.MEDIA_BROKEN,
                I.PEER_UNREACHABLE,
                I.PEER_REACHABLE,
            ),
            S.CONNECTING,
        ),
        (
            (
                I.JOIN,
                I.WELCOMED_WITH_PEERS,
                I.MEDIA_CONNECTED,
                I.MEDIA_BROKEN,
                I.PEER_UNREACHABLE,
                I.PEER_REACHABLE,
                I.MEDIA_CONNECTED,
            ),
            S.CONNECTED,
        ),
        # ... or someone joins (their new process, once the old place expired),
        (
            (
                I.JOIN,
                I.WELCOMED_WITH_PEERS,
                I.MEDIA_CONNECTED,
                I.MEDIA_BROKEN,
                I.PEER_UNREACHABLE,
                I.PEER_LEFT,
                I.PEER_JOINED,
            ),
            S.CONNECTING,
        ),
        # ... or a path comes up anyway: someone is clearly there.
        ((I.JOIN, I.WELCOMED_ALONE, I.MEDIA_CONNECTED), S.CONNECTED),
        # Media that flows is believed over a silent signaling path.
        ((I.JOIN, I.WELCOMED_WITH_PEERS, I.MEDIA_CONNECTED, I.PEER_UNREACHABLE), S.CONNECTED),
        ((I.JOIN, I.WELCOMED_ALONE, I.PEER_UNREACHABLE), S.WAITING),
        ((I.JOIN, I.WELCOMED_WITH_PEERS, I.MEDIA_CONNECTED, I.PEER_REACHABLE), S.CONNECTED),
        ((I.JOIN, I.PEER_REACHABLE), S.JOINING),
        ((I.JOIN, I.FATAL), S.FAILED),
        ((I.JOIN, I.WELCOMED_ALONE, I.HANG_UP), S.ENDED),
        ((I.HANG_UP,), S.ENDED),
        # Inputs that do not apply leave the state alone.
        ((I.MEDIA_CONNECTED,), S.IDLE),
        ((I.JOIN, I.MEDIA_CONNECTED), S.JOINING),
        ((I.JOIN, I.WELCOMED_ALONE, I.MEDIA_BROKEN), S.WAITING),
        ((I.JOIN, I.WELCOMED_ALONE, I.PEER_LEFT), S.WAITING),
        # Final states are final.
        ((I.JOIN, I.FATAL, I.WELCOMED_ALONE, I.HANG_UP), S.FAILED),
        ((I.JOIN, I.HANG_UP, I.JOIN, I.FATAL), S.ENDED),
    ],
)
def test_transitions(inputs, final):
    assert run(*inputs).state is final


def test_observers_hear_changes_only_with_reasons():
    machine = CallStateMachine()
    seen: list[StateChange] = []
    unsubscribe = machine.subscribe(seen.append)
    machine.feed(I.JOIN)
    machine.feed(I.JOIN)  # no change: no event
    machine.feed(I.FATAL, "room-full: this call already has 2 people")
    assert seen == [
        StateChange(S.IDLE, S.JOINING, I.JOIN),
        StateChange(S.JOINING, S.FAILED, I.FATAL, "room-full: this call already has 2 people"),
    ]
    assert machine.reason.startswith("room-full")
    unsubscribe()
    machine.feed(I.HANG_UP)
    assert len(seen) == 2


def test_only_ended_and_failed_are_final():
    assert {s for s in S if s.final} == {S.ENDED, S.FAILED}
