"""Is the other person still there? PeerLiveness as tables of (time, event) -> verdicts."""

import pytest

from desktop_call.call.liveness import PeerLiveness, Verdict

P, U = Verdict.PROBE, Verdict.UNREACHABLE


def play(script, *, probe_after=2.5, answer_timeout=3.0):
    """Run (time, event) steps; return the (time, verdict) pairs other than NOTHING.

    Events: "tick" (media down, signaling up), "tick-up" (media still counted up),
    "tick-offline" (our signaling is down), "media", "signal", "restart".
    """
    live = PeerLiveness(0.0, probe_after=probe_after, answer_timeout=answer_timeout)
    seen = []
    for at, event in script:
        if event.startswith("tick"):
            verdict = live.tick(
                at, media_up=event == "tick-up", signaling_up=event != "tick-offline"
            )
            if verdict is not Verdict.NOTHING:
                seen.append((at, verdict))
        elif event == "media":
            if live.media(at):
                seen.append((at, "back"))
        elif event == "signal":
            if live.signal(at):
                seen.append((at, "back"))
        elif event == "restart":
            live.signaling_restarted()
    return seen, live


def ticks(start, stop, event="tick"):
    return [(float(t), event) for t in range(start, stop + 1)]


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        # Heartbeats keep coming: never a question.
        ([(t, e) for n in range(1, 10) for t, e in ((n - 0.5, "media"), (n, "tick-up"))], []),
        # A peer that dies: asked at 3 s of silence, unreachable 3 s later (media down
        # by then), asked again every 3 s, never "unreachable" twice.
        (ticks(1, 4, "tick-up") + ticks(5, 12), [(3.0, P), (6.0, U), (7.0, P), (10.0, P)]),
        # The questions are answered (only the media path is broken): it stays reachable,
        # and it is still asked every 3 s while the media is silent ...
        (
            [*ticks(1, 3, "tick-up"), (3.5, "signal"), *ticks(4, 6), (6.5, "signal"), *ticks(7, 9)],
            [(3.0, P), (6.0, P), (9.0, P)],
        ),
        # ... so a peer that answered once and then vanished is found out.
        (
            [*ticks(1, 3, "tick-up"), (3.5, "signal"), *ticks(4, 9)],
            [(3.0, P), (6.0, P), (9.0, U)],
        ),
        # An answer after the deadline still brings it back.
        (
            [*ticks(1, 4, "tick-up"), *ticks(5, 6), (6.5, "signal")],
            [(3.0, P), (6.0, U), (6.5, "back")],
        ),
        # So do heartbeats (the old path came back).
        (
            [*ticks(1, 4, "tick-up"), *ticks(5, 6), (6.2, "media")],
            [(3.0, P), (6.0, U), (6.2, "back")],
        ),
        # While the media is still counted up, no conclusion: it waits for "down".
        (ticks(1, 8, "tick-up") + ticks(9, 9), [(3.0, P), (9.0, U)]),
        # Our own signaling is down: no question, no conclusion (we are the one offline).
        (ticks(1, 12, "tick-offline"), []),
        # It went down after the question: the question is void, asked again once back.
        (
            [*ticks(1, 3, "tick-up"), *ticks(4, 7, "tick-offline"), *ticks(8, 11)],
            [(3.0, P), (8.0, P), (11.0, U)],
        ),
        # Our connection was replaced (resume after a network change): the question sent
        # on the old one proves nothing, so it is asked again at once, not concluded.
        (
            [*ticks(1, 4, "tick-up"), (4.5, "restart"), *ticks(5, 8)],
            [(3.0, P), (5.0, P), (8.0, U)],
        ),
    ],
)
def test_verdicts(script, expected):
    seen, _ = play(script)
    assert seen == expected


def test_unreachable_until_it_answers():
    _, live = play([*ticks(1, 4, "tick-up"), *ticks(5, 6)])
    assert live.unreachable
    assert live.signal(7.0) is True
    assert not live.unreachable
    assert live.signal(7.5) is False  # only the first sign of life is news


def test_old_signs_of_life_do_not_answer_a_newer_question():
    live = PeerLiveness(0.0)
    live.signal(1.0)
    assert live.tick(3.0, media_up=True, signaling_up=True) is P
    assert live.tick(7.0, media_up=False, signaling_up=True) is U


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        PeerLiveness(0.0, probe_after=0)
