"""CurveZMQ through the real processes: with keys configured, only an actor holding an authorised key trains."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import zmq.auth

LONG_RUN = ("--total-steps", "100000000")


def make_keys(root: Path) -> tuple[Path, Path, Path]:
    """The README's layout: the learner's dir (server.key_secret + authorized_clients/), one authorised actor dir
    and one with a key the learner does not know (both hold the learner's public server.key)."""
    learner, good, bad = root / "learner", root / "good", root / "bad"
    for d in (learner, good, bad):
        d.mkdir(parents=True)
    zmq.auth.create_certificates(str(learner), "server")
    zmq.auth.create_certificates(str(good), "client")
    zmq.auth.create_certificates(str(bad), "client")
    (learner / "authorized_clients").mkdir()
    shutil.copy(good / "client.key", learner / "authorized_clients" / "client.key")
    for d in (good, bad):
        shutil.copy(learner / "server.key", d / "server.key")
    return learner, good, bad


@pytest.mark.e2e
def test_only_an_actor_with_an_authorised_key_joins_and_trains(stack, tmp_path):
    learner_keys, good_keys, bad_keys = make_keys(tmp_path / "keys")
    learner = stack.learner(*LONG_RUN, "--net.curve-dir", str(learner_keys))
    good = stack.actor("good", "--curve-dir", str(good_keys))
    bad = stack.actor("bad", "--curve-dir", str(bad_keys))
    plain = stack.actor("plain")  # no keys at all
    seg = stack.segments_of
    stack.wait_status(
        lambda s: seg(s, "good") >= 5 and s["updates"] >= 3, "the authorised actor to train", alive=[learner, good]
    )
    time.sleep(3.0)  # give the others every chance to get through (they keep retrying Hello)
    final = stack.status()
    assert set(final["actors"]) == {"good"}
    assert seg(final, "bad") == 0 and seg(final, "plain") == 0
    assert final["received_segments"] == final["accepted_segments"]  # nothing from them even reached decoding
    assert bad.alive() and plain.alive()  # refused peers keep trying; they neither crash nor get in
    assert "joined learner run" not in bad.log.read_text() + plain.log.read_text()
