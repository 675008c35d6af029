"""Making environments by id, for every part of the system (actor, learner, tests) the same way.

``make_env`` accepts any gymnasium id, including the ``"some.module:EnvId"`` form that imports ``some.module``
(which registers its ids) before the look-up. Our own ids are registered by importing this package, so they
always resolve. Lookup failures become :class:`UnknownEnvironmentError` with the list of our ids, instead of
gymnasium's assorted error types; failures while *building* a known env (bad kwargs, a missing optional package)
are left as they are, since they already say what went wrong.
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium
from gymnasium import error as gym_error

from envs.ids import OWN_ENV_IDS, register_all


class UnknownEnvironmentError(ValueError):
    """The id names no registered environment (or its ``module:`` prefix cannot be imported)."""


def _lookup(env_id: str) -> gymnasium.envs.registration.EnvSpec:
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
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # Only a missing ``module:`` prefix is an unknown id; a missing dependency inside that module is not.
            if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
                raise UnknownEnvironmentError(
                    f"cannot import module {module!r} named in env id {env_id!r}. {hint}"
                ) from exc
            raise
    try:
        return gymnasium.spec(name)
    except gym_error.Error as exc:
        raise UnknownEnvironmentError(f"unknown environment id {env_id!r} ({exc}). {hint}") from exc


def make_env(env_id: str, **kwargs: Any) -> gymnasium.Env:
    """Build ``env_id`` with gymnasium's registered wrappers (time limit, order enforcing, checker) and ``kwargs``.

    Raises :class:`UnknownEnvironmentError` for an id that is not registered.
    """
    return gymnasium.make(_lookup(env_id), **kwargs)


def env_spaces(env_id: str, **kwargs: Any) -> tuple[gymnasium.Space, gymnasium.Space]:
    """``(observation_space, action_space)`` of ``env_id`` built with ``kwargs``; the env is closed again.

    The learner needs the spaces to size its model but never steps an env, so it should not keep one alive.
    """
    env = make_env(env_id, **kwargs)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()
