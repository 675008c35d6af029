"""The gymnasium ids this project registers, and their registration.

Every entry point is a string, so registering imports nothing: the adapters' heavy packages (memory-gym/pygame,
memory-maze/dm_control/mujoco) are imported only when such an env is made. Registration is idempotent, so
importing ``envs`` again (or from several places) never triggers gymnasium's "overriding environment" warning.

| id | entry point (in ``envs``) | kwargs |
|---|---|---|
| ``agalite/TMaze-v0`` | ``tmaze:TMazeEnv`` (TimeLimit 1000) | ``corridor_length=120``, ``num_distractors=6`` |
| ``agalite/MysteryPath-Grid-Easy-v0`` | ``mystery_path:MysteryPathEasyEnv`` | ``grid=True`` (128 steps) |
| ``agalite/MysteryPath-Easy-v0`` | ``mystery_path:MysteryPathEasyEnv`` | ``grid=False`` (512 steps) |
| ``agalite/MemoryMaze-{9x9,11x11,13x13,15x15}-v0`` | ``memory_maze:MemoryMazeEnv`` | ``size=...`` |
| ``agalite/CueRecall-v0`` | ``cue_recall:CueRecallEnv`` (continuous actions) | ``delay=8``, ``num_distractors=2`` |
| ``agalite/DelayedRecall-v0`` | ``delayed_recall:DelayedRecallEnv`` | ``num_symbols=4, delay=20, num_noise=4`` |
| ``agalite/PopGym-<Task><Level>-v0`` (12 ids) | ``popgym:PopGymEnv`` | ``task=..., level=...`` |
| ``agalite/MiniGrid-MemoryS{7,11}-v0`` | ``minigrid:MiniGridMemoryEnv`` | ``size=7`` / ``size=11`` |
"""

from __future__ import annotations

from typing import Any

import gymnasium

NAMESPACE = "agalite"
TMAZE_ID = f"{NAMESPACE}/TMaze-v0"
MYSTERY_PATH_GRID_EASY_ID = f"{NAMESPACE}/MysteryPath-Grid-Easy-v0"
MYSTERY_PATH_EASY_ID = f"{NAMESPACE}/MysteryPath-Easy-v0"
MEMORY_MAZE_SIZES = ("9x9", "11x11", "13x13", "15x15")
MEMORY_MAZE_IDS = tuple(f"{NAMESPACE}/MemoryMaze-{size}-v0" for size in MEMORY_MAZE_SIZES)
CUE_RECALL_ID = f"{NAMESPACE}/CueRecall-v0"
DELAYED_RECALL_ID = f"{NAMESPACE}/DelayedRecall-v0"
POPGYM_TASKS = ("RepeatFirst", "RepeatPrevious", "CountRecall", "Autoencode")
POPGYM_LEVELS = ("Easy", "Medium", "Hard")
POPGYM_IDS = {(t, lv): f"{NAMESPACE}/PopGym-{t}{lv}-v0" for t in POPGYM_TASKS for lv in POPGYM_LEVELS}
MINIGRID_MEMORY_SIZES = (7, 11)
MINIGRID_MEMORY_IDS = tuple(f"{NAMESPACE}/MiniGrid-MemoryS{size}-v0" for size in MINIGRID_MEMORY_SIZES)

# id -> keyword arguments of gymnasium.register
_SPECS: dict[str, dict[str, Any]] = {
    TMAZE_ID: {"entry_point": "envs.tmaze:TMazeEnv", "max_episode_steps": 1000},
    # Mystery Path and Memory Maze end their episodes themselves (time limit reported as truncation).
    MYSTERY_PATH_GRID_EASY_ID: {"entry_point": "envs.mystery_path:MysteryPathEasyEnv", "kwargs": {"grid": True}},
    MYSTERY_PATH_EASY_ID: {"entry_point": "envs.mystery_path:MysteryPathEasyEnv", "kwargs": {"grid": False}},
    **{
        env_id: {"entry_point": "envs.memory_maze:MemoryMazeEnv", "kwargs": {"size": size}}
        for env_id, size in zip(MEMORY_MAZE_IDS, MEMORY_MAZE_SIZES, strict=True)
    },
    CUE_RECALL_ID: {"entry_point": "envs.cue_recall:CueRecallEnv"},
    DELAYED_RECALL_ID: {"entry_point": "envs.delayed_recall:DelayedRecallEnv"},
    # POPGym and MiniGrid end their episodes themselves (MiniGrid's max_steps is reported as truncation).
    **{
        env_id: {"entry_point": "envs.popgym:PopGymEnv", "kwargs": {"task": task, "level": level}}
        for (task, level), env_id in POPGYM_IDS.items()
    },
    **{
        env_id: {"entry_point": "envs.minigrid:MiniGridMemoryEnv", "kwargs": {"size": size}}
        for env_id, size in zip(MINIGRID_MEMORY_IDS, MINIGRID_MEMORY_SIZES, strict=True)
    },
}

OWN_ENV_IDS: tuple[str, ...] = tuple(_SPECS)


def register_all() -> None:
    """Register every id above with gymnasium unless it is registered already."""
    for env_id, spec in _SPECS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, **spec)
