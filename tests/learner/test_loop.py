"""The learner's run loop in-process: real sockets on loopback, a real actor in a thread, a real run directory.

What the loop promises: constructing a ``Learner`` touches nothing; ``run`` trains, publishes, checkpoints and
writes the final policy, which is the published graph with the final weights patched in (equal to tracing the model
again); a second learner on the same run directory resumes where the first stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from actor.client import Actor, ActorConfig
from export import export_step_function
from learner.checkpoint import checkpoint_path
from learner.config import RunConfig, load_preset
from learner.train import Learner
from learner.trainer import Trainer
from policy.runtime import StepFunction

T, ENVS = 8, 2


def small_config(run_dir: Path, total_steps: int, ports: list[int] | None = None) -> RunConfig:
    base = load_preset("test-tmaze-agalite")
    trajectory, policy, control = ports or (0, 0, 0)
    return dataclasses.replace(
        base,
        run_dir=str(run_dir),
        total_steps=total_steps,
        segment_length=T,
        envs_per_actor=ENVS,
        batch_envs=ENVS,
        checkpoint_interval_s=3600.0,
        log_interval_s=3600.0,
        net=dataclasses.replace(
            base.net, host="127.0.0.1", trajectory_port=trajectory, policy_port=policy, control_port=control
        ),
    )


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def run_with_an_actor(learner: Learner) -> None:
    """``learner.run()`` on this thread while one real actor (ONNX Runtime, T-Maze envs) feeds it from another."""
    net = learner.cfg.net
    actor = Actor(
        ActorConfig(
            learner_host="127.0.0.1",
            trajectory_port=net.trajectory_port,
            policy_port=net.policy_port,
            control_port=net.control_port,
            actor_id="in-process",
            hello_timeout_s=1.0,
        )
    )
    thread = threading.Thread(target=actor.run, name="actor", daemon=True)
    thread.start()
    try:
        learner.run()
    finally:
        actor.stop.set()
        thread.join(timeout=60)
        learner.close()
    assert not thread.is_alive()


def _outputs(fn: StepFunction) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    meta = fn.metadata
    obs = rng.normal(size=(3, *meta.obs_shape)).astype(meta.obs_dtype)
    logits, value, state = fn.run(obs, np.array([True, False, True]), fn.initial_state(3))
    return [logits, value, *state.values()]


def _refuse_constant(name: str) -> float:
    pytest.fail(f"a run file holds the non-standard JSON constant {name}")


def test_constructing_a_learner_touches_nothing(tmp_path: Path, free_ports) -> None:
    cfg = small_config(tmp_path / "run", total_steps=T * ENVS, ports=free_ports(3))
    learner = Learner(cfg)
    assert not (tmp_path / "run").exists()
    assert learner.server is None and learner.publisher is None
    for port in (cfg.net.trajectory_port, cfg.net.policy_port, cfg.net.control_port):
        assert _port_is_free(port)
    learner.close()


def test_the_loop_trains_checkpoints_and_resumes(tmp_path: Path, free_ports) -> None:
    run_dir = tmp_path / "run"
    first = Learner(small_config(run_dir, total_steps=3 * T * ENVS, ports=free_ports(3)))
    run_with_an_actor(first)
    assert first.updates >= 3 and first.env_steps >= 3 * T * ENVS
    for name in ("config.json", "status.json", "summary.json", "policy.onnx", "policy.json"):
        assert (run_dir / name).is_file(), name
    for name in ("status.json", "summary.json"):  # strict JSON, whatever the numbers (no NaN constants)
        json.loads((run_dir / name).read_text(), parse_constant=_refuse_constant)
    assert checkpoint_path(run_dir).is_file()
    # The curves: a fixed set of actor tags however many actors come and go, not one tag per actor id.
    curves = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    curves.Reload()
    actor_tags = {t for t in curves.Tags()["scalars"] if t.startswith("actors/")}
    assert {"actors/contributing", "actors/segments_min", "actors/segments_max"} <= actor_tags
    assert not any("in-process" in t for t in actor_tags)
    assert curves.Scalars("actors/contributing")[-1].value == 1.0
    assert curves.Scalars("actors/segments_max")[-1].value >= 3

    # The final policy is the published graph with the final weights and version, the same as tracing again.
    final = StepFunction.from_file(run_dir / "policy.onnx")
    assert final.metadata.policy_version == first.version
    traced = export_step_function(first.trainer.model.cpu(), policy_version=first.version)
    assert final.metadata.graph_sha256 == traced.graph_sha256
    for a, b in zip(_outputs(final), _outputs(StepFunction.from_bytes(traced.onnx_bytes)), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)

    second = Learner(small_config(run_dir, total_steps=first.env_steps + T * ENVS, ports=free_ports(3)))
    second.setup()
    assert second.resumed
    assert (second.version, second.env_steps, second.updates) == (first.version, first.env_steps, first.updates)
    for name, value in first.trainer.model.state_dict().items():
        torch.testing.assert_close(second.trainer.model.state_dict()[name].cpu(), value.cpu(), rtol=0, atol=0)
    run_with_an_actor(second)
    assert second.version > first.version
    assert StepFunction.from_file(run_dir / "policy.onnx").metadata.policy_version == second.version


def test_trainer_state_round_trips_with_extra_entries(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, total_steps=1000)
    a = Trainer(cfg, *_spaces(cfg))
    a.version, a.env_steps, a.updates = 5, 640, 5
    a.extra["obs_normaliser"] = {"count": torch.tensor(3.0), "mean": torch.zeros(4)}
    earlier_runs_s = 12.5  # a counter the checkpoint carries (training time of earlier runs), set here, not measured
    state = copy.deepcopy(a.state_dict(elapsed_s=earlier_runs_s))  # what a checkpoint file holds
    saved = [p.detach().clone() for p in a.model.parameters()]
    with torch.no_grad():
        for p in a.model.parameters():
            p.add_(0.5)
    b = Trainer(cfg, *_spaces(cfg))
    b.load_state_dict(state)
    assert (b.version, b.env_steps, b.updates) == (5, 640, 5)
    # every counter the file carries comes back as saved, the training time of earlier runs included
    saved_counters = dict(policy_version=5, env_steps=640, updates=5, elapsed_s=earlier_runs_s)
    resaved = b.state_dict()
    assert {k: resaved[k] for k in saved_counters} == saved_counters
    assert set(b.extra) == {"obs_normaliser"} and float(b.extra["obs_normaliser"]["count"]) == 3.0
    assert all(torch.equal(p, q) for p, q in zip(saved, b.model.parameters(), strict=True))
    assert not any(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True))


def test_an_update_without_segments_is_refused(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, total_steps=1000)
    with pytest.raises(ValueError, match="at least one segment"):
        Trainer(cfg, *_spaces(cfg)).update([])


def _spaces(cfg: RunConfig) -> tuple:
    from envs import env_spaces

    return env_spaces(cfg.env.id, **cfg.env.kwargs_dict())
