"""Config cross-checks: contradictions are refused before anything starts, with a message naming the settings."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from learner.config import RunConfig, check_config, config_problems, load_preset

ROOT = Path(__file__).resolve().parents[2]


def test_the_presets_pass() -> None:
    for name in ("tmaze-agalite", "test-tmaze-agalite", "test-tmaze-gtrxl", "test-tmaze-lstm"):
        assert config_problems(load_preset(name)) == [], name


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda c: dataclasses.replace(c, ppo=dataclasses.replace(c.ppo, minibatches=32)), "ppo.minibatches (32)"),
        (lambda c: dataclasses.replace(c, segment_length=0), "segment_length must be >= 1"),
        (lambda c: dataclasses.replace(c, learner_timeout_s=0.5), "learner_timeout_s (0.5) must exceed"),
        (lambda c: dataclasses.replace(c, envs_per_actor=2000), "max_envs_per_segment"),
        (lambda c: dataclasses.replace(c, ppo=dataclasses.replace(c.ppo, gamma=1.5)), "ppo.gamma"),
        (lambda c: dataclasses.replace(c, net=dataclasses.replace(c.net, policy_port=c.net.control_port)), "ports"),
        (lambda c: dataclasses.replace(c, learner_ranks=16), "fewer env rows per minibatch than learner_ranks (16)"),
        (lambda c: dataclasses.replace(c, learner_ranks=0), "learner_ranks must be >= 1"),
        (
            lambda c: dataclasses.replace(c, ppo=dataclasses.replace(c.ppo, preserve_values_loss_power=-1.0)),
            "ppo.preserve_values_loss_power must be >= 0",
        ),
    ],
)
def test_contradictions_are_named(change, needle: str) -> None:
    cfg: RunConfig = change(load_preset("test-tmaze-agalite"))
    with pytest.raises(ValueError) as info:
        check_config(cfg)
    assert needle in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    base = load_preset("test-tmaze-agalite")
    cfg = dataclasses.replace(base, total_steps=0, batch_envs=0, heartbeat_interval_s=-1.0)
    problems = config_problems(cfg)
    assert any(p.startswith("total_steps") for p in problems)
    assert any(p.startswith("batch_envs") for p in problems)
    assert any(p.startswith("heartbeat_interval_s") for p in problems)


def _learner(*flags: str) -> subprocess.CompletedProcess[str]:
    """``python -m learner`` as a user starts it (no torchrun variables in its environment)."""
    return subprocess.run(
        [sys.executable, "-m", "learner", "--preset", "test-tmaze-agalite", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")},
    )


def test_the_command_line_refuses_them_in_one_line() -> None:
    result = _learner("--ppo.minibatches", "64")
    assert result.returncode == 2
    assert "ppo.minibatches (64) exceeds batch_envs (16)" in result.stderr and "Traceback" not in result.stderr


def test_a_value_loss_weight_without_the_preservation_is_refused_in_one_line() -> None:
    """The GRU trains without the preservation by default, so the weight alone would change nothing, silently."""
    result = _learner("--model.kind", "gru", "--ppo.preserve-values-loss-power", "1")
    assert result.returncode == 2
    assert "add --ppo.preserve-values" in result.stderr and "Traceback" not in result.stderr
    base = load_preset("test-tmaze-agalite")  # the AGaLiTe preserves by default: the weight applies
    weighted = dataclasses.replace(base, ppo=dataclasses.replace(base.ppo, preserve_values_loss_power=1.0))
    assert config_problems(weighted) == []


def test_learner_ranks_without_torchrun_is_refused_in_one_line() -> None:
    result = _learner("--learner-ranks", "2")
    assert result.returncode != 0
    assert "--learner-ranks 2 needs the ranks started together" in result.stderr
    assert "Traceback" not in result.stderr
