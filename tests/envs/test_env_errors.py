"""Every mistake a user can make about an env is one EnvSetupError naming the env: bad kwargs, unknown ids,
modules that fail to import, spaces the models cannot take. Envs written into a temporary module are real
gymnasium envs, imported through the ``module:EnvId`` form."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import gymnasium
import pytest

from envs import (
    EnvImportError,
    EnvKwargsError,
    EnvSetupError,
    UnknownEnvironmentError,
    UnsupportedSpaceError,
    check_env,
    make_env,
)

ODD_SPACES_MODULE = textwrap.dedent(
    '''
    """Envs with spaces the models do not take, registered on import."""
    import gymnasium
    import numpy as np
    from gymnasium import spaces


    class OddEnv(gymnasium.Env):
        def __init__(self, kind: str = "dict"):
            box = spaces.Box(0.0, 1.0, (3,), np.float32)
            if kind == "dict":
                self.observation_space = spaces.Dict({"a": box})
                self.action_space = spaces.Discrete(2)
            elif kind == "multibinary":
                self.observation_space = box
                self.action_space = spaces.MultiBinary(4)
            elif kind == "int_obs":
                self.observation_space = spaces.Box(0, 9, (3,), np.int64)
                self.action_space = spaces.Discrete(2)
            elif kind == "shifted":
                self.observation_space = box
                self.action_space = spaces.Discrete(3, start=1)
            else:
                self.observation_space = box
                self.action_space = spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, True, False, {}


    class KwargsEnv(OddEnv):
        """Takes **kwargs and refuses unknown keys itself, when it runs."""

        def __init__(self, **kwargs):
            unknown = set(kwargs) - {"kind"}
            if unknown:
                raise TypeError(f"KwargsEnv got an unexpected keyword argument {sorted(unknown)[0]!r}")
            super().__init__(**kwargs)


    for name, kind in [("Dict", "dict"), ("MultiBinary", "multibinary"), ("IntObs", "int_obs"),
                       ("Shifted", "shifted"), ("Fine", "fine")]:
        gymnasium.register(id=f"odd/{name}-v0", entry_point=OddEnv, kwargs={"kind": kind})
    gymnasium.register(id="odd/Kwargs-v0", entry_point=KwargsEnv)
    gymnasium.register(id="odd/BrokenEntry-v0", entry_point="odd_envs_broken_dependency:Env")
    '''
)


@pytest.fixture
def odd_modules(tmp_path: Path) -> Iterator[Path]:
    """``odd_envs`` (registers envs with odd spaces), ``odd_envs_raises`` (fails while it runs),
    ``odd_envs_missing_dep`` (imports a package that does not exist) on sys.path."""
    (tmp_path / "odd_envs.py").write_text(ODD_SPACES_MODULE)
    (tmp_path / "odd_envs_raises.py").write_text("raise RuntimeError('this module is broken on purpose')\n")
    (tmp_path / "odd_envs_missing_dep.py").write_text("import no_such_dependency_xyz  # noqa: F401\n")
    (tmp_path / "odd_envs_broken_dependency.py").write_text("import no_such_dependency_xyz  # noqa: F401\n")
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("odd_envs")]:
            del sys.modules[name]
        for env_id in [e for e in gymnasium.registry if e.startswith("odd/")]:
            del gymnasium.registry[env_id]


def _one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text, text
    return text


def test_a_key_the_env_does_not_take_names_the_env_and_the_key() -> None:
    with pytest.raises(EnvKwargsError) as info:
        make_env("CartPole-v1", corridor_length=10)
    text = _one_line(info.value)
    assert "'CartPole-v1'" in text and "'corridor_length'" in text and "sutton_barto_reward" in text
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


def test_keys_that_gymnasium_make_takes_itself_pass() -> None:
    env = make_env("CartPole-v1", max_episode_steps=7)
    assert env.spec is not None and env.spec.max_episode_steps == 7
    env.close()


def test_a_key_refused_by_a_kwargs_constructor_is_an_env_kwargs_error(odd_modules: Path) -> None:
    assert make_env("odd_envs:odd/Kwargs-v0", kind="fine").action_space == gymnasium.spaces.Discrete(2)
    with pytest.raises(EnvKwargsError, match=r"'odd_envs:odd/Kwargs-v0'.*'colour'"):
        make_env("odd_envs:odd/Kwargs-v0", colour="red")


@pytest.mark.parametrize(
    ("env_id", "what"),
    [
        ("odd_envs_raises:Foo-v0", "RuntimeError: this module is broken on purpose"),
        ("odd_envs_missing_dep:Foo-v0", "No module named 'no_such_dependency_xyz'"),
        ("odd_envs:odd/BrokenEntry-v0", "No module named 'no_such_dependency_xyz'"),
    ],
)
def test_a_module_that_fails_to_import_is_one_line(odd_modules: Path, env_id: str, what: str) -> None:
    with pytest.raises(EnvImportError) as info:
        make_env(env_id)
    text = _one_line(info.value)
    assert repr(env_id) in text and what in text


def test_a_missing_module_prefix_is_an_unknown_id() -> None:
    with pytest.raises(UnknownEnvironmentError) as info:
        make_env("no_such_module_xyz:Foo-v0")
    assert "'no_such_module_xyz'" in _one_line(info.value)


@pytest.mark.parametrize(
    ("env_id", "what"),
    [
        ("odd_envs:odd/Dict-v0", "observation space Dict"),
        ("odd_envs:odd/MultiBinary-v0", "action space MultiBinary(4)"),
        ("odd_envs:odd/IntObs-v0", "observation dtype int64"),
        ("odd_envs:odd/Shifted-v0", "must start at 0"),
        ("Blackjack-v1", "observation space Tuple"),
        ("FrozenLake-v1", "observation space Discrete"),
    ],
)
def test_unsupported_spaces_are_one_line(odd_modules: Path, env_id: str, what: str) -> None:
    with pytest.raises(UnsupportedSpaceError) as info:
        check_env(env_id, {})
    text = _one_line(info.value)
    assert repr(env_id) in text and what in text


def test_check_env_returns_the_spaces_of_supported_envs(odd_modules: Path) -> None:
    for env_id in ("CartPole-v1", "Pendulum-v1", "odd_envs:odd/Fine-v0", "agalite/TMaze-v0"):
        info = check_env(env_id, {})
        assert isinstance(info.observation_space, gymnasium.spaces.Box)
        assert isinstance(info.action_space, gymnasium.spaces.Discrete | gymnasium.spaces.Box)
        # Only our own tasks say how far back their memory reaches; gymnasium's classics do not.
        assert (info.memory_horizon is not None) == env_id.startswith("agalite/")


def test_every_error_is_an_env_setup_error() -> None:
    for cls in (UnknownEnvironmentError, EnvImportError, EnvKwargsError, UnsupportedSpaceError):
        assert issubclass(cls, EnvSetupError) and issubclass(cls, ValueError)
