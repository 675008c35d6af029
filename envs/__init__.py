"""Gymnasium environments of the paper, registered on import (cheaply: no adapter package is imported here).

Torch-free by rule: actors import this package. See :mod:`envs.ids` for the ids and :mod:`envs.tmaze` for the
T-Maze's definition.
"""

from envs.ids import (
    CUE_RECALL_ID,
    DELAYED_RECALL_ID,
    MEMORY_MAZE_IDS,
    MYSTERY_PATH_EASY_ID,
    MYSTERY_PATH_GRID_EASY_ID,
    OWN_ENV_IDS,
    TMAZE_ID,
    register_all,
)
from envs.registry import (
    EnvImportError,
    EnvInfo,
    EnvKwargsError,
    EnvSetupError,
    UnknownEnvironmentError,
    UnsupportedSpaceError,
    check_env,
    env_spaces,
    make_env,
    memory_horizon_of,
)
from envs.tmaze import TMazeEnv

register_all()

__all__ = [
    "CUE_RECALL_ID",
    "DELAYED_RECALL_ID",
    "MEMORY_MAZE_IDS",
    "MYSTERY_PATH_EASY_ID",
    "MYSTERY_PATH_GRID_EASY_ID",
    "OWN_ENV_IDS",
    "TMAZE_ID",
    "EnvImportError",
    "EnvInfo",
    "EnvKwargsError",
    "EnvSetupError",
    "TMazeEnv",
    "UnknownEnvironmentError",
    "UnsupportedSpaceError",
    "check_env",
    "env_spaces",
    "make_env",
    "memory_horizon_of",
    "register_all",
]
