"""Small models of every kind for the export tests (a helper module, not a conftest: unique name on purpose)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from models.actor_critic import ActorCritic
from models.registry import build_actor_critic, small_config

OBS_SPACE = spaces.Box(0.0, 1.0, shape=(7,), dtype=np.float32)
ACT_SPACE = spaces.Discrete(3)

#: (test id, kind, config overrides): every model kind, both GTrXL memory forms, the episode-start input, and
#: AGaLiTe as the default preset builds it (the distinct frequency grid at r 2, no component pair to scan once; the
#: full first write), and the mixed first write (one head of two opened at an episode start).
KINDS = [
    ("agalite", "agalite", {}),
    ("galite", "galite", {}),
    ("gtrxl-inputs", "gtrxl", {"memory_form": "inputs"}),
    ("gtrxl-kv", "gtrxl", {"memory_form": "kv"}),
    ("lstm", "lstm", {}),
    ("gru", "gru", {}),
    ("agalite-episode-start", "agalite", {"episode_start_input": True}),
    ("gru-episode-start", "gru", {"episode_start_input": True}),
    (
        "agalite-default-preset",
        "agalite",
        {"episode_start_input": True, "frequencies": "distinct", "r": 2, "first_write": "full"},
    ),
    ("agalite-mixed-first-write", "agalite", {"first_write": "mixed"}),
]
KIND_PARAMS = [pytest.param(kind, kw, id=name) for name, kind, kw in KINDS]


def build(kind: str, overrides: dict | None = None, seed: int = 0, obs_space=OBS_SPACE, act_space=ACT_SPACE):
    """A small actor-critic of ``kind``; skips while that model's module has not landed yet."""
    torch.manual_seed(seed)
    try:
        return build_actor_critic(small_config(kind, **(overrides or {})), obs_space, act_space)
    except NotImplementedError as exc:  # the registry's "module missing" error
        pytest.skip(str(exc))


def perturb(ac: ActorCritic, seed: int = 1) -> None:
    """One Adam step on a random objective over a short sequence: every used parameter moves differently."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(ac.parameters(), lr=1e-2)
    t, b = 4, 3
    obs = torch.rand((t, b, *ac.obs_shape), generator=g).to(torch.float32)
    reset = torch.zeros((t, b), dtype=torch.bool)
    reset[0] = True
    logits, value, _ = ac(obs, reset, ac.initial_state(b))
    w = torch.randn(logits.shape, generator=g)
    loss = (logits * w).sum() + (value * torch.randn(value.shape, generator=g)).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
