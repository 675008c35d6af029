"""The cue probe plays real exported policies (either view) on MiniGrid Memory and writes rows that merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("minigrid", reason="the minigrid extra is not installed (make extras)")

from bench.minigrid_cue_probe import main, play
from envs.minigrid import OBS_SIZE
from export import export_step_function, save_policy
from models.actor_critic import ActorCritic
from models.config import ModelConfig


def _policy(tmp_path: Path, obs_shape: tuple[int, ...], dtype: str, name: str) -> Path:
    torch.manual_seed(0)
    ac = ActorCritic(ModelConfig(kind="gru", rnn_hidden=16), obs_shape, dtype, 7)
    return save_policy(export_step_function(ac, policy_version=0), tmp_path / f"{name}.onnx")


@pytest.mark.parametrize(
    ("obs_shape", "dtype", "view"), [((56, 56, 3), "uint8", "pixels"), ((OBS_SIZE,), "float32", "one-hot")]
)
def test_an_untrained_policy_is_played_in_its_own_view(
    tmp_path: Path, obs_shape: tuple[int, ...], dtype: str, view: str
) -> None:
    row = play(_policy(tmp_path, obs_shape, dtype, view), episodes=40, seed=1, max_steps=20)  # short: a test
    assert row["view"] == view and row["episodes"] == 40 and row["state_size"] == 16
    # an untrained policy wanders: it sees the cue in some episodes (it starts in the cue's column in about a
    # quarter of them), and nothing it does can be right more often than the coin the env tosses
    assert 0.0 < row["cue_seen"] <= 1.0 and 0.0 <= row["success"] <= 1.0
    assert 0.5 <= row["probe_majority"] <= 1.0 and 0.0 <= row["probe_accuracy"] <= 1.0


def test_rows_merge_and_bad_arguments_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = _policy(tmp_path, (OBS_SIZE,), "float32", "p")
    out = tmp_path / "probe"
    main([f"a={policy}", "--episodes", "20", "--max-steps", "20", "--out", str(out)])
    main([f"b={policy}", "--episodes", "20", "--max-steps", "20", "--out", str(out)])
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert set(rows) == {"a", "b"} and rows["a"] == rows["b"]  # same policy, same seed: the same episodes
    assert "| a | one-hot | 20 |" in out.with_suffix(".md").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main([str(policy), "--out", str(out)])
    assert exit_info.value.code == 2 and "LABEL=PATH" in capsys.readouterr().err
