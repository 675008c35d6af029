"""The trainer: model, optimiser and counters, one PPO update per batch, and the state to save and restore.

No sockets, no files, no threads: the run loop (``learner.train``) feeds it batches of segments and decides when to
publish, log and checkpoint. That keeps the part that changes the weights testable on its own, and keeps what a
checkpoint holds in one place.

The saved state is generic: the model's ``state_dict`` (so running statistics the model keeps as buffers travel with
it), the optimiser's, the counters, the RNG states, and ``extra``, a dict any component may fill with more
(tensors and plain values: checkpoints are read with ``torch.load(weights_only=True)``; restored as saved).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from learner.config import RunConfig
from learner.distributed import RankInfo
from learner.ppo import PPO, batch_from_segments
from models.registry import build_actor_critic
from policy.metadata import space_to_dict
from protocol import Segment


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else CPU; otherwise the named device, refused when it cannot be used."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def seed_everything(seed: int) -> None:
    """torch, numpy's global generator and Python's ``random``: what model initialisation and PPO draw from."""
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the global generator is what libraries fall back on; it is saved too
    random.seed(seed)


class Trainer:
    """One learner's trainable state: ``update`` runs PPO on a batch; ``state_dict``/``load_state_dict`` save and
    restore everything needed to continue bit for bit (weights, optimiser, counters, RNG states, ``extra``)."""

    def __init__(
        self,
        cfg: RunConfig,
        observation_space: gymnasium.Space,
        action_space: gymnasium.Space,
        device: torch.device | str = "cpu",
        ranks: RankInfo | None = None,
    ) -> None:
        """``ranks``: this process's place among several learner ranks (the process group must be joined first);
        the model is then wrapped in DistributedDataParallel, which starts every rank from rank 0's weights."""
        self.cfg = cfg
        self.observation_space = observation_space
        self.action_space = action_space
        self.device = torch.device(device)
        self.ranks = ranks or RankInfo()
        seed_everything(cfg.seed)
        self.model = build_actor_critic(cfg.model, observation_space, action_space).to(self.device)
        trained: torch.nn.Module = self.model
        if self.ranks.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" and self.device.index is not None else None
            trained = DistributedDataParallel(self.model, device_ids=device_ids)
        self.ppo = PPO(
            self.model,
            cfg.ppo,
            seed=cfg.seed,
            trained=trained,
            rank=self.ranks.rank,
            world_size=self.ranks.world_size,
        )
        self.version = 0
        """Policy version: the number of updates applied to the weights acting now (also counts resumed runs)."""
        self.env_steps = 0
        self.updates = 0
        self.elapsed_s = 0.0
        """Training time of earlier runs of this run directory (a resumed run adds its own)."""
        self.extra: dict[str, Any] = {}
        """More state to checkpoint, by name; restored as saved."""

    def update(self, segments: Sequence[Segment]) -> dict[str, float]:
        """One PPO update on ``segments``; advances the version and the step counters. Returns the update's
        statistics, with the policy lag of the batch and ``timing/*`` seconds."""
        if not segments:
            raise ValueError("an update needs at least one segment")
        t0 = time.perf_counter()
        lags = [self.version - s.policy_version for s in segments]
        batch = batch_from_segments(list(segments), self.device)
        t1 = time.perf_counter()
        self.ppo.set_lr_fraction(1.0 - self.env_steps / self.cfg.total_steps)
        stats = self.ppo.update(batch)
        t2 = time.perf_counter()
        self.version += 1
        self.updates += 1
        self.env_steps += batch.num_steps
        stats.update(
            {
                "lag/min": float(min(lags)),
                "lag/mean": float(np.mean(lags)),
                "lag/max": float(max(lags)),
                "timing/batch_s": t1 - t0,
                "timing/ppo_update_s": t2 - t1,
            }
        )
        return stats

    def state_dict(self, elapsed_s: float | None = None) -> dict[str, Any]:
        """Everything to continue this run later (``elapsed_s``: total training time so far)."""
        return {
            "model_config": self.cfg.model.to_dict(),
            "observation_space": space_to_dict(self.observation_space),
            "action_space": space_to_dict(self.action_space),
            "model_state": self.model.state_dict(),
            "ppo_state": self.ppo.state_dict(),
            "policy_version": self.version,
            "env_steps": self.env_steps,
            "updates": self.updates,
            "elapsed_s": self.elapsed_s if elapsed_s is None else float(elapsed_s),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(),  # noqa: NPY002 - the global generator seeded above
            "python_rng": random.getstate(),
            "config": self.cfg.to_dict(),
            "extra": dict(self.extra),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (checkpoints without ``extra`` load with an empty one)."""
        self.model.load_state_dict(state["model_state"])
        self.ppo.load_state_dict(state["ppo_state"])
        self.version = int(state["policy_version"])
        self.env_steps = int(state["env_steps"])
        self.updates = int(state["updates"])
        self.elapsed_s = float(state.get("elapsed_s", 0.0))
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])  # noqa: NPY002 - the global generator saved above
        random.setstate(state["python_rng"])
        self.extra = dict(state.get("extra", {}))
