"""The learner SIGKILLed and restarted on its run directory: it resumes from the checkpoint, and the actors that
kept running (the same processes) reconnect by themselves and feed the new learner."""

from __future__ import annotations

import signal

import pytest
import torch

from learner.checkpoint import checkpoint_path
from learner.config import load_preset

PRESET = "test-tmaze-agalite"


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def _adam_steps(ckpt: dict) -> set[int]:
    return {int(float(s["step"])) for s in ckpt["ppo_state"]["optimizer"]["state"].values()}


@pytest.mark.e2e
def test_learner_killed_and_restarted_resumes_and_actors_reconnect(stack):
    ppo = load_preset(PRESET).ppo
    steps_per_update = ppo.epochs * ppo.minibatches  # no target_kl in the preset: every update takes them all
    assert ppo.target_kl is None
    flags = ("--total-steps", "100000000", "--checkpoint-interval-s", "1")
    learner = stack.learner(*flags, preset=PRESET, name="learner-first")
    a0, a1 = stack.actor("a0"), stack.actor("a1")
    seg = stack.segments_of
    ckpt_file = checkpoint_path(stack.run_dir)
    first = stack.wait_status(
        lambda s: s["updates"] >= 10 and seg(s, "a0") > 0 and seg(s, "a1") > 0 and ckpt_file.is_file(),
        "training and a checkpoint",
        alive=[learner, a0, a1],
    )
    assert first["resumed"] is False
    actor_runs = {a: first["actors"][a]["run_id"] for a in ("a0", "a1")}

    learner.signal_group(signal.SIGKILL)
    learner.popen.wait(timeout=30)
    ckpt = _load(ckpt_file)
    assert ckpt["policy_version"] >= 1 and ckpt["env_steps"] > 0
    # the checkpoint holds the optimiser's state: Adam has taken one step per minibatch of every update so far
    assert _adam_steps(ckpt) == {ckpt["updates"] * steps_per_update}

    learner2 = stack.learner(*flags, preset=PRESET, name="learner-second")
    resumed = stack.wait_status(
        lambda s: s["learner_run_id"] != first["learner_run_id"], "the new learner's status", alive=[learner2, a0, a1]
    )
    assert resumed["resumed"] is True
    assert resumed["policy_version"] >= ckpt["policy_version"]
    assert resumed["env_steps"] >= ckpt["env_steps"]
    assert resumed["updates"] >= ckpt["updates"]

    # the same actor processes (never restarted) find the new learner and it trains on their segments
    later = stack.wait_status(
        lambda s: (
            seg(s, "a0") >= 3
            and seg(s, "a1") >= 3
            and s["policy_version"] >= ckpt["policy_version"] + 5
            and s["learner_run_id"] == resumed["learner_run_id"]
        ),
        "the running actors to feed the restarted learner",
        alive=[learner2, a0, a1],
    )
    assert a0.alive() and a1.alive()
    assert {a: later["actors"][a]["run_id"] for a in ("a0", "a1")} == actor_runs
    assert later["accepted_segments"] >= 6

    # the restored optimiser goes on counting from the checkpoint's state (a fresh Adam would count from zero)
    def newer_checkpoint():
        c = _load(ckpt_file)
        return c if c["updates"] > ckpt["updates"] + 2 else None

    ckpt2 = stack.wait_for(newer_checkpoint, "a checkpoint of the restarted learner", alive=[learner2])
    assert _adam_steps(ckpt2) == {ckpt2["updates"] * steps_per_update}
    assert ckpt2["policy_version"] > ckpt["policy_version"]
    assert ckpt2["env_steps"] > ckpt["env_steps"]
