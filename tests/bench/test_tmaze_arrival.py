"""bench.tmaze_arrival: the corridor profile of real exported policies whose drift is known by construction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces

from bench.machine import machine_info
from bench.tmaze_arrival import corridor_profile, write_markdown
from envs.tmaze import TMazeEnv
from export.step_function import export_step_function
from tests.helpers.export_models import build

CORRIDOR = 12


def _policy(tmp_path: Path, logits: list[float], value: float = 0.0) -> Path:
    """A fresh small AGaLiTe for the T-Maze whose heads ignore their features: ``logits`` and ``value`` everywhere."""
    env = TMazeEnv(corridor_length=CORRIDOR)
    ac = build("agalite", obs_space=env.observation_space, act_space=spaces.Discrete(4))
    with torch.no_grad():
        ac.policy[-1].weight.zero_()
        ac.policy[-1].bias.copy_(torch.tensor(logits))
        ac.value[-1].weight.zero_()
        ac.value[-1].bias.fill_(value)
    path = tmp_path / "policy.onnx"
    path.write_bytes(export_step_function(ac, observation_space=env.observation_space).onnx_bytes)
    return path


def test_a_policy_that_walks_right_drifts_and_arrives(tmp_path: Path) -> None:
    profile = corridor_profile(_policy(tmp_path, [0.0, 0.0, 0.0, 6.0]), CORRIDOR)
    assert profile["drift"] > 0.9
    assert profile["reached_junction"] == 16 and profile["furthest"] == [CORRIDOR - 1] * 16
    assert profile["p_corridor"] == pytest.approx(list(np.exp([0, 0, 0, 6]) / np.exp([0, 0, 0, 6]).sum()), abs=1e-3)


def test_a_policy_that_walks_left_stays_at_the_start(tmp_path: Path) -> None:
    profile = corridor_profile(_policy(tmp_path, [0.0, 0.0, 8.0, 0.0]), CORRIDOR)
    assert profile["drift"] < -0.9
    assert profile["reached_junction"] == 0 and max(profile["furthest"]) <= 3


def test_a_uniform_policy_has_no_drift_and_the_report_counts_arrivals(tmp_path: Path) -> None:
    profile = corridor_profile(_policy(tmp_path, [0.0, 0.0, 0.0, 0.0], value=-1.5), CORRIDOR)
    assert abs(profile["drift"]) < 1e-3 and profile["p_corridor"] == pytest.approx([0.25] * 4, abs=1e-3)
    assert profile["value_by_position"] == pytest.approx([-1.5] * CORRIDOR, abs=1e-3)
    rows = [
        {
            "model": "gru",
            "corridor": CORRIDOR,
            "steps": 10,
            "seed": s,
            "success_rate": None,
            "load_before": 0.0,
            **profile,
            "reached_junction": r,
        }
        for s, r in ((1, 0), (2, 3))
    ]
    out = tmp_path / "report.md"
    write_markdown({"rows": rows, "machine": machine_info()}, out)
    text = out.read_text()
    assert "| GRU-128 | 2 | 1 of 2 |" in text
    assert "| -1.50 | +0.00 | - |" in text  # the value at the start, beyond position 8 against it; no statistics
