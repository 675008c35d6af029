"""Checkpoints written before a model setting existed keep meaning the model they saved.

``episode_start_input`` became a setting (on by default) after runs had saved checkpoints whose model config lacks it;
those models were built without the extra input, so the loader and the resume check read the missing key as off.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from gymnasium import spaces

from export.checkpoint import checkpoint_dict, load_actor_critic_from_checkpoint
from learner.config import RunConfig
from learner.resume_check import ResumeConfigError, check_resume
from models.registry import build_actor_critic, small_config
from policy.metadata import space_to_dict

OBS = spaces.Box(-1.0, 1.0, (6,), np.float32)
ACT = spaces.Discrete(3)


def _old_checkpoint(kind: str) -> dict:
    """A checkpoint as a run before the setting would have written it: model built without the input, the key absent
    from both the model config and the run config saved beside it."""
    torch.manual_seed(0)
    model_cfg = small_config(kind, episode_start_input=False)
    ac = build_actor_critic(model_cfg, OBS, ACT)
    ckpt = checkpoint_dict(ac, OBS, ACT, policy_version=7)
    ckpt["config"] = dataclasses.replace(RunConfig(), model=model_cfg).to_dict()
    for saved in (ckpt["model_config"], ckpt["config"]["model"]):
        del saved["episode_start_input"]
    return ckpt


@pytest.mark.parametrize("kind", ["agalite", "gru"])
def test_an_old_checkpoint_loads_as_the_model_it_saved(tmp_path, kind: str) -> None:
    ckpt = _old_checkpoint(kind)
    torch.save(ckpt, tmp_path / "old.pt")
    loaded = load_actor_critic_from_checkpoint(tmp_path / "old.pt")
    assert loaded.ac.cfg.episode_start_input is False
    assert loaded.ac.core.input_dim == loaded.ac.encoder.output_dim
    assert loaded.policy_version == 7
    for name, tensor in ckpt["model_state"].items():
        assert torch.equal(loaded.ac.state_dict()[name], tensor), name


def test_resuming_an_old_checkpoint_names_the_setting_that_differs(tmp_path) -> None:
    ckpt = _old_checkpoint("gru")
    cfg = dataclasses.replace(RunConfig(), model=small_config("gru"))  # today's default: on
    with pytest.raises(ResumeConfigError, match=r"episode_start_input: false -> true.*--model\.no-episode-start-input"):
        check_resume(ckpt, cfg, space_to_dict(OBS), space_to_dict(ACT), tmp_path)
    same = dataclasses.replace(cfg, model=small_config("gru", episode_start_input=False))
    assert check_resume(ckpt, same, space_to_dict(OBS), space_to_dict(ACT), tmp_path) == []
