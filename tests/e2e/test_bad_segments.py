"""Malformed and stale segments from a live peer on the trajectory socket: each is dropped and counted under its
reason in status.json, never trained on, while the learner keeps training on a real actor's segments."""

from __future__ import annotations

import time
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq

from learner.config import load_preset
from protocol import (
    Heartbeat,
    Hello,
    LearnerStatus,
    Segment,
    Welcome,
    connect_control,
    connect_trajectories,
    decode,
    encode,
    tcp_address,
)

PRESET = "test-tmaze-agalite"


def _segment(meta: dict, t: int, version: int, *, b: int = 2, seq: int = 0, obs_shape=None, **overrides) -> Segment:
    """A segment that fits the learner's spec (from its Welcome) unless ``overrides`` break it."""
    obs_shape = tuple(meta["obs_shape"]) if obs_shape is None else obs_shape
    fields: dict[str, Any] = dict(
        actor_id="intruder",
        run_id="intruder-run",
        seq=seq,
        policy_version=version,
        obs=np.zeros((t + 1, b, *obs_shape), np.float32),
        actions=np.zeros((t, b), np.int64),
        logp=np.full((t, b), np.log(0.25), np.float32),
        rewards=np.full((t, b), -0.1, np.float32),
        terminated=np.zeros((t, b), bool),
        truncated=np.zeros((t, b), bool),
        reset=np.zeros((t + 1, b), bool),
        bootstrap_values=np.zeros((t, b), np.float32),
        initial_state={s["name"]: np.zeros((b, *s["shape"]), s["dtype"]) for s in meta["state"]},
        episodes=[],
    )
    fields.update(overrides)
    return Segment(**fields)


def _with_protocol(data: bytes, version: int) -> bytes:
    body = msgpack.unpackb(data, raw=False)  # arrays stay msgpack ExtType objects and are packed back unchanged
    body["protocol"] = version
    return msgpack.packb(body)


@pytest.mark.e2e
def test_malformed_and_stale_segments_are_dropped_and_counted(stack):
    max_lag = load_preset(PRESET).max_policy_lag
    learner = stack.learner("--total-steps", "100000000", preset=PRESET)
    a0 = stack.actor("a0")
    ctx = zmq.Context()
    try:
        # say Hello like an actor would, to learn the run's segment length, observation shape and state layout
        control = connect_control(ctx, tcp_address("127.0.0.1", stack.ports.control))
        control.send(encode(Hello(actor_id="intruder", run_id="intruder-run", num_envs=2, host="test", pid=0)))
        assert control.poll(120_000), "no Welcome from the learner\n" + stack.report()
        welcome = decode(control.recv())
        assert isinstance(welcome, Welcome)
        meta, t = welcome.policy.metadata, welcome.segment_length

        before = stack.wait_status(
            lambda s: s["policy_version"] >= max_lag + 2 and s["segments_per_actor"].get("a0"),
            "training past the lag bound",
            alive=[learner, a0],
        )
        # the learner's version right now, from its answer to a heartbeat (status.json may be a second old)
        control.send(
            encode(
                Heartbeat(
                    actor_id="intruder",
                    run_id="intruder-run",
                    time=time.time(),
                    policy_version=0,
                    num_envs=2,
                    segments_sent=0,
                )
            )
        )
        assert control.poll(60_000)
        status = decode(control.recv())
        assert isinstance(status, LearnerStatus), status
        now = status.policy_version
        assert now >= before["policy_version"]
        push = connect_trajectories(ctx, tcp_address("127.0.0.1", stack.ports.trajectory), sndhwm=100)
        rng = np.random.default_rng(0)
        good = encode(_segment(meta, t, now, seq=0))
        nan_rewards = _segment(meta, t, now, seq=1, rewards=np.full((t, 2), np.nan, np.float32))
        bad = [
            b"\xc1" + rng.bytes(200),  # 0xc1 is never valid msgpack
            good[: len(good) // 2],  # truncated
            encode(_segment(meta, t, now, seq=2, obs_shape=(meta["obs_shape"][0] + 3,))),  # wrong obs shape
            _with_protocol(good, 99),  # another protocol version
            encode(nan_rewards, validate=False),  # NaN rewards (the sender skips its own validation)
            encode(_segment(meta, t, now - max_lag - 1, seq=3)),  # stale: lag beyond max_policy_lag
            encode(_segment(meta, t, now + 1000, seq=4)),  # from the future
        ]
        for data in bad:
            push.send(data)
        push.send(encode(_segment(meta, t, now, seq=5)))  # and one good one, which is accepted

        def delta(s: dict, reason: str) -> int:
            return s["dropped"].get(reason, 0) - before["dropped"].get(reason, 0)

        expected = {"NOT_MSGPACK": 2, "SPEC_MISMATCH": 1, "BAD_VERSION": 1, "NON_FINITE": 1, "future_version": 1}
        after = stack.wait_status(
            lambda s: (
                all(delta(s, r) >= n for r, n in expected.items())
                and delta(s, "stale") >= 1
                and s["segments_per_actor"].get("intruder", 0) >= 1
            ),
            "every bad segment counted under its reason",
            alive=[learner, a0],
        )
        assert {r: delta(after, r) for r in expected} == expected, after["dropped"]
        assert after["segments_per_actor"]["intruder"] == 1  # only the good one got through
        assert after["received_segments"] - before["received_segments"] >= len(bad) + 1

        # training goes on, and the learner process is alive and well
        stack.wait_status(
            lambda s: s["policy_version"] >= after["policy_version"] + 3,
            "training to continue after the bad segments",
            alive=[learner, a0],
        )
        assert learner.alive()
        assert "receiver_error" not in stack.status()["dropped"]
        control.close(linger=0)
        push.close(linger=0)
    finally:
        ctx.destroy(linger=0)
