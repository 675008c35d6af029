"""Action distributions of the policy head, from the flat parameter vector the step function outputs.

Discrete actions: the parameters are logits [.., A] (a categorical). Continuous actions: the parameters are
[.., 2A] = the mean of each action dimension followed by its log standard deviation (a diagonal Gaussian; the log
std is a state-independent learned vector, as in CleanRL's continuous PPO, emitted by the graph so that actors
sample without knowing the weights). Sampling happens on the actor side (``policy/runtime.py``, numpy only) with the
same formulas; these torch versions give the learner the log-probabilities and entropies of the same laws.
"""

from __future__ import annotations

import torch
from torch.distributions import Categorical, Distribution, Independent, Normal

ACTION_KINDS = ("discrete", "continuous")


def action_distribution(params: torch.Tensor, kind: str) -> Distribution:
    """The law of the actions given the policy output ``params`` (logits, or mean and log std)."""
    if kind == "discrete":
        return Categorical(logits=params)
    if kind == "continuous":
        mean, log_std = params.chunk(2, dim=-1)
        return Independent(Normal(mean, log_std.exp()), 1)
    raise ValueError(f"unknown action kind {kind!r}; expected one of {ACTION_KINDS}")
