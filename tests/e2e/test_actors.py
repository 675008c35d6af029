"""Actors joining late, dying and coming back, against a bare learner (`python -m learner` + `python -m actor`)."""

from __future__ import annotations

import signal

import pytest

LONG_RUN = ("--total-steps", "100000000")  # never finishes by itself: the test ends it


@pytest.mark.e2e
def test_actor_joining_late_is_served_alongside_the_first_two(stack):
    learner = stack.learner(*LONG_RUN)
    a0, a1 = stack.actor("a0"), stack.actor("a1")
    seg = stack.segments_of
    first = stack.wait_status(
        lambda s: seg(s, "a0") > 0 and seg(s, "a1") > 0 and s["updates"] >= 2,
        "the first two actors to send segments",
        alive=[learner, a0, a1],
    )
    assert "a2" not in first["actors"]
    a2 = stack.actor("a2")
    joined = stack.wait_status(
        lambda s: seg(s, "a2") > 0, "the late actor's first segments", alive=[learner, a0, a1, a2]
    )
    # all three keep being served: every count grows past what it was when the third one joined
    stack.wait_status(
        lambda s: all(seg(s, a) > seg(joined, a) + 1 for a in ("a0", "a1", "a2")) and s["live_actors"] == 3,
        "all three actors' segment counts to grow",
        alive=[learner, a0, a1, a2],
    )
    final = stack.status()
    assert set(final["actors"]) == {"a0", "a1", "a2"}
    assert len({final["actors"][a]["run_id"] for a in ("a0", "a1", "a2")}) == 3
    assert final["policy_version"] > joined["policy_version"]
    assert final["lost_actors"] == 0


@pytest.mark.e2e
def test_actor_killed_mid_run_then_restarted_rejoins(stack):
    learner = stack.learner(*LONG_RUN)
    a0, a1 = stack.actor("a0"), stack.actor("a1", name="a1-first")
    seg = stack.segments_of
    before = stack.wait_status(
        lambda s: seg(s, "a0") > 1 and seg(s, "a1") > 1 and "a1" in s["actors"],
        "both actors to send segments",
        alive=[learner, a0, a1],
    )
    old_run = before["actors"]["a1"]["run_id"]

    a1.signal_group(signal.SIGKILL)  # no Bye, possibly in the middle of a segment or a send
    a1.popen.wait(timeout=30)
    killed = stack.status()
    # training goes on with the one actor left (the learner must not wait for the dead one)
    stack.wait_status(
        lambda s: s["policy_version"] >= killed["policy_version"] + 5 and seg(s, "a0") > seg(killed, "a0") + 3,
        "training to continue without a1",
        alive=[learner, a0],
    )

    a1_again = stack.actor("a1", name="a1-second")
    at_restart = stack.status()
    rejoined = stack.wait_status(
        lambda s: (
            s["actors"].get("a1", {}).get("run_id") not in (None, old_run) and seg(s, "a1") >= seg(at_restart, "a1") + 3
        ),
        "the restarted a1 (new run id) to rejoin and send segments",
        alive=[learner, a0, a1_again],
    )
    assert rejoined["policy_version"] > at_restart["policy_version"]
    assert rejoined["lost_actors"] >= 1  # the killed run left without Bye: counted as lost
    assert rejoined["actors"]["a1"]["policy_version"] > 0  # it acts with a learned policy, not a fresh one
    assert learner.alive()
