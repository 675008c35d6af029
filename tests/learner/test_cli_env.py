"""The env part of the command line: the preset's env kwargs follow only the preset's env, and every env
mistake is one line on stderr with exit status 2, found before any process or run directory exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from learner.cli import parse_config
from learner.config import load_preset


def test_another_env_id_drops_the_presets_kwargs() -> None:
    assert load_preset("tmaze-agalite").env.kwargs_dict() == {"corridor_length": 10}
    cfg = parse_config(["--env.id", "CartPole-v1"], "test")
    assert cfg.env.id == "CartPole-v1" and cfg.env.kwargs_dict() == {}


def test_another_env_id_gets_its_own_run_directory() -> None:
    """Resuming the preset's run (runs/tmaze-agalite) with another env cannot work: the default follows the env."""
    base = load_preset("tmaze-agalite")
    assert parse_config(["--env.id", "CartPole-v1"], "test").run_dir == str(Path(base.run_dir).parent / "CartPole-v1")
    cfg = parse_config(["--env.id", "gymnasium.envs.classic_control:Pendulum-v1"], "test")
    assert Path(cfg.run_dir).name == "gymnasium.envs.classic_control-Pendulum-v1"
    assert parse_config(["--env.id", "CartPole-v1", "--run-dir", "x/y"], "test").run_dir == "x/y"
    assert parse_config(["--env.id", "agalite/TMaze-v0"], "test").run_dir == base.run_dir


def test_the_presets_own_env_id_keeps_its_kwargs() -> None:
    cfg = parse_config(["--env.id", "agalite/TMaze-v0"], "test")
    assert cfg.env.kwargs_dict() == {"corridor_length": 10}


@pytest.mark.parametrize("form", ["separate", "equals"])
def test_kwargs_given_with_another_env_are_kept(form: str) -> None:
    kwargs = '{"g": 9.0}'
    flags = ["--env.kwargs", kwargs] if form == "separate" else [f"--env.kwargs={kwargs}"]
    cfg = parse_config(["--env.id", "Pendulum-v1", *flags], "test")
    assert cfg.env.kwargs_dict() == {"g": 9.0}


def test_kwargs_given_for_the_presets_env_are_kept() -> None:
    cfg = parse_config(["--env.kwargs", '{"corridor_length": 4}'], "test")
    assert cfg.env.kwargs_dict() == {"corridor_length": 4}


@pytest.mark.parametrize(
    ("flags", "expect"),
    [
        (["--env.id", "CartPole-v1", "--env.kwargs", '{"corridor_length": 10}'], "'corridor_length'"),
        (["--env.id", "NoSuchEnv-v0"], "unknown environment id 'NoSuchEnv-v0'"),
        (["--env.id", "Blackjack-v1"], "observation space Tuple"),
        (["--env.id", "no_such_module_xyz:Foo-v0"], "cannot import module 'no_such_module_xyz'"),
    ],
)
def test_env_mistakes_exit_2_with_one_line(flags: list[str], expect: str, capsys, tmp_path: Path) -> None:
    run_dir = tmp_path / "never-created"
    with pytest.raises(SystemExit) as info:
        parse_config([*flags, "--run-dir", str(run_dir)], "test")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and expect in err, err
    assert not run_dir.exists()
