"""Rebuild an actor-critic from a learner checkpoint (the torch side of ``python -m export``).

A checkpoint is a dict saved with ``torch.save`` holding ``model_config`` (``ModelConfig.to_dict()``),
``observation_space`` / ``action_space`` (``policy.metadata.space_to_dict``), ``model_state`` (the actor-critic's
``state_dict``) and ``policy_version``; other keys (optimiser, RNG, counters) are the learner's and ignored here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch

from models.actor_critic import ActorCritic
from models.config import ModelConfig
from models.registry import build_actor_critic
from policy.metadata import PolicyError, space_from_dict, space_to_dict

CHECKPOINT_KEYS = ("model_config", "observation_space", "action_space", "model_state", "policy_version")

#: The only globals a checkpoint may name beyond torch's own tensors and containers: the learner's numpy RNG state is
#: a tuple holding a uint32 ndarray. Readers pass these to ``torch.load(weights_only=True)``; without them every
#: checkpoint the learner writes is refused.
SAFE_GLOBALS: list[Any] = [
    np._core.multiarray._reconstruct,  # type: ignore[attr-defined]  # private to numpy, so not in its stubs
    np.ndarray,
    np.dtype,
    np.dtypes.UInt32DType,
]


@dataclass
class LoadedCheckpoint:
    """An actor-critic restored from a checkpoint, with what the export metadata needs."""

    ac: ActorCritic
    observation_space: gymnasium.Space
    action_space: gymnasium.Space
    policy_version: int


def checkpoint_dict(
    ac: ActorCritic, observation_space: gymnasium.Space, action_space: gymnasium.Space, policy_version: int = 0
) -> dict[str, Any]:
    """The keys this module reads, in the checkpoint layout (the learner adds its own keys beside them)."""
    return {
        "model_config": ac.cfg.to_dict(),
        "observation_space": space_to_dict(observation_space),
        "action_space": space_to_dict(action_space),
        "model_state": ac.state_dict(),
        "policy_version": int(policy_version),
    }


def load_actor_critic_from_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> LoadedCheckpoint:
    """Load ``path`` (a ``torch.save`` dict, read with ``weights_only=True``: no pickled code runs)."""
    p = Path(path)
    if not p.is_file():
        raise PolicyError(f"checkpoint {str(p)!r} does not exist")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            data = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise PolicyError(f"cannot read checkpoint {str(p)!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"checkpoint {str(p)!r} holds a {type(data).__name__}, expected a dict")
    missing = [k for k in CHECKPOINT_KEYS if k not in data]
    if missing:
        raise PolicyError(f"checkpoint {str(p)!r} lacks keys {missing} (has {sorted(data)})")
    cfg = ModelConfig.from_saved(dict(data["model_config"]))
    obs_space = space_from_dict(data["observation_space"])
    act_space = space_from_dict(data["action_space"])
    ac = build_actor_critic(cfg, obs_space, act_space)
    try:
        ac.load_state_dict(data["model_state"])
    except RuntimeError as exc:
        raise PolicyError(f"checkpoint {str(p)!r} does not fit a {cfg.kind} model of its own config: {exc}") from exc
    ac.eval()
    return LoadedCheckpoint(ac, obs_space, act_space, int(data["policy_version"]))
