"""A resume compares only the settings the model kind reads.

The default preset's AGaLiTe moved to the distinct frequency grid; a GRU run the same preset wrote before
(``--model.kind gru``, its config carrying the AGaLiTe's old grid) is the same model and must resume, while an AGaLiTe
run of the old grid is another model and is refused with the flag that restores it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from envs.registry import check_env
from export.checkpoint import checkpoint_dict
from learner.cli import parse_config
from learner.config import RunConfig
from learner.resume_check import ResumeConfigError, check_resume
from models.registry import build_actor_critic
from policy.metadata import space_to_dict


def _checkpoint(cfg: RunConfig) -> tuple[dict, dict, dict]:
    info = check_env(cfg.env.id, cfg.env.kwargs_dict())
    torch.manual_seed(0)
    ac = build_actor_critic(cfg.model, info.observation_space, info.action_space)
    ckpt = checkpoint_dict(ac, info.observation_space, info.action_space, policy_version=3)
    ckpt["config"] = cfg.to_dict()
    return ckpt, space_to_dict(info.observation_space), space_to_dict(info.action_space)


def test_a_gru_run_resumes_after_an_agalite_default_changed(tmp_path: Path) -> None:
    before = parse_config(["--model.kind", "gru", "--model.frequencies", "reference"], "test")
    ckpt, obs, act = _checkpoint(before)
    now = parse_config(["--model.kind", "gru"], "test")
    assert now.model.frequencies != before.model.frequencies  # the preset's default differs from the saved one
    assert check_resume(ckpt, now, obs, act, tmp_path) == []


def test_an_agalite_run_of_the_old_grid_is_another_model(tmp_path: Path) -> None:
    ckpt, obs, act = _checkpoint(parse_config(["--model.frequencies", "reference"], "test"))
    with pytest.raises(
        ResumeConfigError, match=r'frequencies: "reference" -> "distinct".*--model\.frequencies reference'
    ):
        check_resume(ckpt, parse_config([], "test"), obs, act, tmp_path)


def test_an_agalite_run_of_the_gated_first_write_is_another_model(tmp_path: Path) -> None:
    """A run the default preset wrote before the full first write (its config.json has no ``first_write``: it loads
    as the gated write it was trained with) is refused with the flag that resumes it, and resumes with that flag."""
    ckpt, obs, act = _checkpoint(parse_config(["--model.first-write", "gated"], "test"))
    del ckpt["config"]["model"]["first_write"]
    with pytest.raises(ResumeConfigError, match=r'first_write: "gated" -> "full".*--model\.first-write gated'):
        check_resume(ckpt, parse_config([], "test"), obs, act, tmp_path)
    assert check_resume(ckpt, parse_config(["--model.first-write", "gated"], "test"), obs, act, tmp_path) == []


def test_a_run_saved_before_preserve_values_existed_resumes_as_it_trained(tmp_path: Path) -> None:
    """A config.json written before ``ppo.preserve_values`` existed reads as the behaviour it trained with (off):
    today's default (on) is refused with the flag that resumes it, and that flag resumes it."""
    ckpt, obs, act = _checkpoint(parse_config(["--ppo.no-preserve-values"], "test"))
    del ckpt["config"]["ppo"]["preserve_values"]
    with pytest.raises(ResumeConfigError, match=r"ppo\.preserve_values: false -> true.*--ppo\.no-preserve-values"):
        check_resume(ckpt, parse_config([], "test"), obs, act, tmp_path)
    assert check_resume(ckpt, parse_config(["--ppo.no-preserve-values"], "test"), obs, act, tmp_path) == []
