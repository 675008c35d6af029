"""An exported policy file for the runtime tests (helper module with a unique name, not a conftest)."""

from __future__ import annotations

from pathlib import Path

import torch

import envs
from export import export_step_function, save_policy
from models.registry import build_actor_critic, small_config

TMAZE_KWARGS = {"corridor_length": 4}


def export_tmaze_policy(out: Path, kind: str = "gtrxl", seed: int = 0, **overrides) -> Path:
    """A small fresh policy sized for T-Maze (GTrXL by default: float and bool state, non-zero initial mask)."""
    obs_space, act_space = envs.env_spaces(envs.TMAZE_ID, **TMAZE_KWARGS)
    torch.manual_seed(seed)
    ac = build_actor_critic(small_config(kind, **overrides), obs_space, act_space)
    exported = export_step_function(ac, observation_space=obs_space, action_space=act_space)
    return save_policy(exported, out)
