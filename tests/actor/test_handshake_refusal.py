"""An actor refused by a CURVE learner says why in its log, instead of saying Hello forever in silence."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import zmq

from actor.client import Actor, ActorConfig, LearnerGone
from protocol import CurveServer, bind_control, bound_port, generate_keypair

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")


def test_a_keyless_actor_logs_that_the_learner_wants_curve_keys(caplog: pytest.LogCaptureFixture) -> None:
    ctx = zmq.Context()
    router = bind_control(ctx, port=0, host="127.0.0.1", curve=CurveServer(generate_keypair()))
    client = Actor(ActorConfig(control_port=bound_port(router), hello_timeout_s=0.3, device="cpu"))
    outcome: list[BaseException] = []

    def connect() -> None:
        try:
            client._connect()
        except BaseException as err:  # handed to the test thread
            outcome.append(err)

    caplog.set_level(logging.INFO, logger="actor")
    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while "requires CurveZMQ keys" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.stop.set()
        worker.join(30)
        client._close_sockets()
        router.close(linger=0)
        client.ctx.destroy(linger=0)
        ctx.destroy(linger=0)
    assert "requires CurveZMQ keys (pass --curve-dir)" in caplog.text, caplog.text
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], LearnerGone)  # stopped while connecting, never welcomed
