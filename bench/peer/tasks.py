"""The memory task suite of the side-by-side benchmark: env id, kwargs, how success is measured, threshold, budget.

Every task is one of this project's registered gymnasium ids with its horizon knob set by kwargs, so our stack and
Sample Factory build the same env from the same id. Two kinds of measure (``bench/peer/README.md`` says why):

* ``success``: the env reports ``info["success"]`` (1 or 0) on an episode's last step; the curve is its mean over
  the last 100 finished episodes (our ``charts/success_rate``, Sample Factory's ``policy_stats/avg_success``);
* ``return``: popgym reports no success; its episodic return is normalised to [-1, 1] by popgym itself (1 = every
  answer right), so the curve is the mean return over the last 100 episodes (``charts/episodic_return``,
  ``reward/reward``) and the threshold is a normalised-return level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Measure = Literal["success", "return"]


@dataclass(frozen=True)
class Task:
    name: str
    env_id: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    measure: Measure = "success"
    threshold: float = 0.9
    budget: int = 1_000_000
    horizon: str = ""
    """What the memory must span, in words (for the report)."""
    chance: float | None = None
    """The measure of a memoryless agent, where it is known."""


def _dr(delay: int, budget: int) -> Task:
    return Task(
        f"delayed_recall_k4_d{delay}",
        "agalite/DelayedRecall-v0",
        {"num_symbols": 4, "delay": delay},
        budget=budget,
        horizon=f"{delay + 1} steps (cue to query)",
        chance=0.25,
    )


def _tmaze(corridor: int, budget: int) -> Task:
    return Task(
        f"tmaze_{corridor}",
        "agalite/TMaze-v0",
        {"corridor_length": corridor},
        budget=budget,
        horizon=f"{corridor - 1} steps (corridor)",
        chance=0.5,
    )


def _popgym(task: str, level: str, threshold: float, horizon: str) -> Task:
    return Task(
        f"popgym_{task.lower()}_{level.lower()}",
        f"agalite/PopGym-{task}{level}-v0",
        measure="return",
        threshold=threshold,
        budget=1_000_000 if level == "Easy" else 2_000_000,
        horizon=horizon,
    )


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        _dr(10, 1_000_000),
        _dr(20, 1_000_000),
        _dr(40, 2_000_000),
        _tmaze(20, 1_000_000),
        _tmaze(50, 2_000_000),
        _tmaze(100, 3_000_000),
        # Card tasks: a normalised return of 0.9 means about 95% of the answers right; memoryless play scores
        # about -0.5 (one suit in four). CountRecall and Autoencode are much harder for every published model
        # (the POPGym paper's best GRU scores are well below 0.5), so their threshold is lower.
        _popgym("RepeatFirst", "Easy", 0.9, "the whole episode (first card)"),
        _popgym("RepeatFirst", "Medium", 0.9, "the whole episode (first card)"),
        _popgym("RepeatPrevious", "Easy", 0.9, "4 cards back"),
        _popgym("RepeatPrevious", "Medium", 0.9, "32 cards back"),
        _popgym("CountRecall", "Easy", 0.5, "the whole episode (counts)"),
        _popgym("CountRecall", "Medium", 0.5, "the whole episode (counts)"),
        _popgym("Autoencode", "Easy", 0.5, "the whole deck, replayed in reverse"),
        _popgym("Autoencode", "Medium", 0.5, "the whole deck, replayed in reverse"),
        Task(
            "minigrid_memory_s7",
            "agalite/MiniGrid-MemoryS7-v0",
            budget=2_000_000,
            horizon="the walk down the corridor",
            chance=0.5,
        ),
        Task(
            "minigrid_memory_s7_pixels",
            "agalite/MiniGrid-MemoryS7-v0",
            {"view": "pixels"},
            budget=1_000_000,  # half the one-hot task's: with the CNN a run steps at under half its rate here
            horizon="the walk down the corridor (seen as 56x56 images)",
            chance=0.5,
        ),
        Task(
            "minigrid_memory_s11",
            "agalite/MiniGrid-MemoryS11-v0",
            budget=3_000_000,
            horizon="the walk down the corridor",
            chance=0.5,
        ),
    )
}
