"""Making environments by id, for every part of the system (actor, learner, tests) the same way.

``make_env`` accepts any gymnasium id, including the ``"some.module:EnvId"`` form that imports ``some.module``
(which registers its ids) before the look-up. Our own ids are registered by importing this package, so they
always resolve. Everything a user can get wrong about an env raises a subclass of :class:`EnvSetupError` whose
message is one line naming the env, so the command-line tools can print it instead of a traceback:

- :class:`UnknownEnvironmentError`: the id names no registered env (or its ``module:`` prefix does not exist);
- :class:`EnvImportError`: a module the env needs (the ``module:`` prefix or the entry point) fails to import;
- :class:`EnvKwargsError`: a keyword argument the env does not take;
- :class:`UnsupportedSpaceError` (from :func:`check_env`): spaces the models cannot handle.

Other failures while building an env (a value the env itself refuses) are left as they are, since the env's own
message already says what went wrong.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
from gymnasium import error as gym_error
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec, load_env_creator

from envs.ids import OWN_ENV_IDS, register_all

#: Observation dtypes the models' input layer accepts.
SUPPORTED_OBS_DTYPES = ("float32", "float64", "uint8")

#: Keyword arguments that ``gymnasium.make`` consumes itself instead of passing them to the env.
_MAKE_KWARGS = frozenset(p for p in inspect.signature(gymnasium.make).parameters if p != "id" and p != "kwargs")


class EnvSetupError(ValueError):
    """An environment cannot be used as asked; the message is one line meant for the user."""


class UnknownEnvironmentError(EnvSetupError):
    """The id names no registered environment (or its ``module:`` prefix cannot be imported)."""


class EnvImportError(EnvSetupError):
    """A module the env needs exists but fails to import (an error inside it, or a missing dependency)."""


class EnvKwargsError(EnvSetupError, TypeError):
    """A keyword argument the env's constructor does not take."""


class UnsupportedSpaceError(EnvSetupError):
    """The env's observation or action space is of a kind the models do not handle."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _import(module: str, env_id: str, hint: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # A missing ``module:`` prefix is an unknown id; a missing dependency inside that module is an import error.
        if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
            msg = f"cannot import module {module!r} named in env id {env_id!r}. {hint}"
            raise UnknownEnvironmentError(msg) from exc
        raise EnvImportError(f"env {env_id!r}: importing module {module!r} failed: {_one_line(exc)}") from exc
    except Exception as exc:  # any error raised while the module runs: report it in one line
        raise EnvImportError(f"env {env_id!r}: importing module {module!r} failed: {_one_line(exc)}") from exc


def _lookup(env_id: str) -> EnvSpec:
    hint = (
        f"Known ids of this project: {', '.join(OWN_ENV_IDS)}. Any other gymnasium id works once its package is "
        f"imported; the form 'some.module:EnvId' imports the module for you."
    )
    if not isinstance(env_id, str) or not env_id:
        raise UnknownEnvironmentError(f"env_id must be a non-empty string, got {env_id!r}. {hint}")
    register_all()
    if env_id.count(":") > 1:
        raise UnknownEnvironmentError(f"env id {env_id!r} has more than one ':'; expected 'EnvId' or 'module:EnvId'")
    module, _, name = env_id.rpartition(":")
    if module:
        _import(module, env_id, hint)
    try:
        return gymnasium.spec(name)
    except gym_error.Error as exc:
        raise UnknownEnvironmentError(f"unknown environment id {env_id!r} ({_one_line(exc)}). {hint}") from exc


def _creator(spec: EnvSpec, env_id: str) -> Callable[..., Any] | None:
    """The env's constructor, imported now so that a module failing to import is reported as such."""
    if spec.entry_point is None:
        return None
    if callable(spec.entry_point):
        return spec.entry_point
    try:
        return load_env_creator(spec.entry_point)
    except Exception as exc:  # ImportError, gymnasium's DependencyNotInstalled, or anything the module raises
        raise EnvImportError(f"env {env_id!r}: importing {spec.entry_point!r} failed: {_one_line(exc)}") from exc


def _check_kwargs(creator: Callable[..., Any] | None, env_id: str, kwargs: dict[str, Any]) -> None:
    """Refuse keys the constructor does not take, before calling it (a constructor with ``**kwargs`` takes all)."""
    if creator is None:
        return
    try:
        params = inspect.signature(creator).parameters
    except (TypeError, ValueError):  # builtins and some C extensions have no signature to check against
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = {
        name
        for name, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY) and name != "self"
    }
    unknown = sorted(set(kwargs) - accepted - _MAKE_KWARGS)
    if unknown:
        keys = ", ".join(repr(k) for k in unknown)
        takes = ", ".join(sorted(accepted)) or "none"
        raise EnvKwargsError(f"env {env_id!r} takes no keyword argument {keys} (it takes: {takes})")


def make_env(env_id: str, **kwargs: Any) -> gymnasium.Env:
    """Build ``env_id`` with gymnasium's registered wrappers (time limit, order enforcing, checker) and ``kwargs``.

    Raises :class:`UnknownEnvironmentError`, :class:`EnvImportError` or :class:`EnvKwargsError` (all
    :class:`EnvSetupError`) for the mistakes they name.
    """
    spec = _lookup(env_id)
    _check_kwargs(_creator(spec, env_id), env_id, kwargs)
    try:
        return gymnasium.make(spec, **kwargs)
    except TypeError as exc:
        # A constructor taking **kwargs refuses a key only when it runs; its message names the key.
        if "keyword argument" in str(exc):
            raise EnvKwargsError(f"env {env_id!r}: {_one_line(exc)}") from exc
        raise


@dataclass(frozen=True)
class EnvInfo:
    """What the command-line tools learn from building an env once: its spaces and how far back its memory reaches."""

    observation_space: gymnasium.Space
    action_space: gymnasium.Space
    memory_horizon: int | None
    """Steps from an observation the task needs remembered to the step that needs it, both counted, at most
    (``env.unwrapped.memory_horizon``); None when the env does not say."""


def memory_horizon_of(env: gymnasium.Env) -> int | None:
    """The env's declared ``memory_horizon`` (a positive int on the unwrapped env), or None.

    A task knows how far back its memory reaches (a T-Maze's corridor, a recall task's delay); the learner cannot
    infer it, and a training segment shorter than it never sees the cue and the step that needs it together.
    """
    value = getattr(env.unwrapped, "memory_horizon", None)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        return None
    return int(value)


def env_info(env_id: str, **kwargs: Any) -> EnvInfo:
    """Build ``env_id`` with ``kwargs`` once, read its :class:`EnvInfo` and close it again.

    The learner needs the spaces to size its model but never steps an env, so it should not keep one alive.
    """
    env = make_env(env_id, **kwargs)
    try:
        return EnvInfo(env.observation_space, env.action_space, memory_horizon_of(env))
    finally:
        env.close()


def env_spaces(env_id: str, **kwargs: Any) -> tuple[gymnasium.Space, gymnasium.Space]:
    """``(observation_space, action_space)`` of ``env_id`` built with ``kwargs`` (:func:`env_info`)."""
    info = env_info(env_id, **kwargs)
    return info.observation_space, info.action_space


def space_problem(observation_space: gymnasium.Space, action_space: gymnasium.Space) -> str | None:
    """Why the models cannot take these spaces, or None when they can.

    The models take a Box observation (float32, float64 or uint8) and either a Discrete action space starting
    at 0 or a 1-D float Box (continuous actions). The check lives here, torch-free, so that a command can refuse
    an env before it starts any process.
    """
    if not isinstance(observation_space, spaces.Box):
        return (
            f"observation space {observation_space} is not supported (only Box); wrap the env, e.g. with "
            "gymnasium.wrappers.FlattenObservation, and register the wrapped env"
        )
    if np.dtype(observation_space.dtype).name not in SUPPORTED_OBS_DTYPES:
        return f"observation dtype {observation_space.dtype} is not supported ({', '.join(SUPPORTED_OBS_DTYPES)})"
    if isinstance(action_space, spaces.Discrete):
        if int(action_space.start) != 0:
            return f"Discrete action spaces must start at 0, got {action_space}"
        return None
    if isinstance(action_space, spaces.Box):
        if len(action_space.shape) != 1 or not np.issubdtype(action_space.dtype, np.floating):
            return f"action space {action_space} is not supported (a continuous action space must be a 1-D float Box)"
        return None
    return f"action space {action_space} is not supported (only Discrete or a 1-D float Box)"


def check_env(env_id: str, kwargs: dict[str, Any]) -> EnvInfo:
    """Build ``env_id`` once and check that the models can take its spaces; returns its :class:`EnvInfo`.

    Raises an :class:`EnvSetupError` (one line, naming the env) for every mistake a user can make: an unknown
    id, a module that fails to import, a bad keyword argument, an unsupported space.
    """
    info = env_info(env_id, **kwargs)
    problem = space_problem(info.observation_space, info.action_space)
    if problem is not None:
        raise UnsupportedSpaceError(f"env {env_id!r}: {problem}")
    return info
