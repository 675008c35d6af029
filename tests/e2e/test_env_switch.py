"""Any gymnasium env with nothing but ``--env.id``: the default preset's T-Maze kwargs stay with the T-Maze, a
short run trains through the whole stack (`python -m learner.launch`: learner, actor processes, ONNX policies)
on CartPole-v1 (discrete) and Pendulum-v1 (continuous), and the exported policy plays with `actor.play`; an
image env (MiniGrid Memory's pixel view) does the same through the CNN encoder, uint8 frames on the wire. Env
mistakes are one line on stderr and exit status 2 from both entry points, before any process or run directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import onnx
import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
STEPS = 4000  # a few updates (512 env steps each with the default preset): the stack runs, nothing is learned

#: A module of envs with spaces the models do not take, and one that fails while it is imported.
ODD_ENVS = textwrap.dedent(
    """
    import gymnasium
    import numpy as np
    from gymnasium import spaces


    class OddEnv(gymnasium.Env):
        def __init__(self, kind="dict"):
            box = spaces.Box(0.0, 1.0, (4, 4) if kind == "grid" else (3,), np.float32)
            self.observation_space = spaces.Dict({"a": box}) if kind == "dict" else box
            self.action_space = spaces.MultiBinary(4) if kind == "multibinary" else spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, True, False, {}


    gymnasium.register(id="odd/Dict-v0", entry_point=OddEnv, kwargs={"kind": "dict"})
    gymnasium.register(id="odd/MultiBinary-v0", entry_point=OddEnv, kwargs={"kind": "multibinary"})
    gymnasium.register(id="odd/Grid-v0", entry_point=OddEnv, kwargs={"kind": "grid"})  # a 2-D array: no image
    """
)


@pytest.fixture
def odd_env_path(tmp_path: Path) -> Path:
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "odd_envs.py").write_text(ODD_ENVS)
    (folder / "broken_envs.py").write_text("raise RuntimeError('broken on purpose')\n")
    return folder


def _cli(module: str, flags: list[str], run_dir: Path, extra_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(extra_path)]), COLUMNS="200")
    argv = [PYTHON, "-m", module, *flags, "--run-dir", str(run_dir)]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)


ENV_MISTAKES = [
    pytest.param(
        ["--env.id", "CartPole-v1", "--env.kwargs", '{"corridor_length": 10}'],
        ["'CartPole-v1'", "'corridor_length'"],
        id="bad-kwarg",
    ),
    pytest.param(["--env.id", "NoSuchEnv-v0"], ["unknown environment id 'NoSuchEnv-v0'"], id="unknown-id"),
    pytest.param(["--env.id", "odd_envs:odd/Dict-v0"], ["'odd_envs:odd/Dict-v0'", "Dict"], id="dict-space"),
    pytest.param(
        ["--env.id", "odd_envs:odd/MultiBinary-v0"], ["'odd_envs:odd/MultiBinary-v0'", "MultiBinary"], id="multibinary"
    ),
    pytest.param(
        ["--env.id", "odd_envs:odd/Grid-v0"], ["encoder 'auto'", "(4, 4)", "'flatten' or 'mlp'"], id="2d-array"
    ),
    pytest.param(
        ["--env.id", "broken_envs:Foo-v0"], ["'broken_envs'", "RuntimeError: broken on purpose"], id="module-fails"
    ),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("flags", "expect"), ENV_MISTAKES)
def test_env_mistakes_are_one_line_before_anything_starts(
    flags: list[str], expect: list[str], tmp_path: Path, odd_env_path: Path
) -> None:
    check_env_mistake("learner.launch", flags, expect, tmp_path, odd_env_path)


@pytest.mark.e2e
def test_the_bare_learner_checks_the_env_the_same_way(tmp_path: Path, odd_env_path: Path) -> None:
    # both entry points parse with learner.cli; one case shows the bare learner goes through the same check
    check_env_mistake("learner", ["--env.id", "odd_envs:odd/Dict-v0"], ["Dict"], tmp_path, odd_env_path)


def check_env_mistake(module: str, flags: list[str], expect: list[str], tmp_path: Path, odd_env_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = _cli(module, flags, run_dir, odd_env_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for part in expect:
        assert part in lines[0], lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not run_dir.exists(), "nothing may be started or written before the env is checked"


def _play(policy: Path, env_id: str, env_kwargs: dict | None = None) -> subprocess.CompletedProcess:
    argv = [PYTHON, "-m", "actor.play", str(policy), "--env", env_id, "--episodes", "2"]
    if env_kwargs:
        argv += ["--env-kwargs", json.dumps(env_kwargs)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)


def train_then_play(stack, env_id: str, env_kwargs: dict | None = None) -> tuple[dict, Path]:
    """Launch the stack on ``env_id`` with the default preset (only the env, the budget, the run directory and this
    test's ports given), check that the run ended whole, play its exported policy, and return the summary and the
    policy's path."""
    argv = [PYTHON, "-m", "learner.launch", "--env.id", env_id, "--total-steps", str(STEPS)]
    if env_kwargs:
        argv += ["--env.kwargs", json.dumps(env_kwargs)]
    launcher = stack.start("launcher", [*argv, "--run-dir", str(stack.run_dir), *stack.ports.learner_flags()])
    assert stack.wait_exit(launcher, timeout=300) == 0, stack.report()

    summary = stack.read_summary()
    assert summary is not None, stack.report()
    assert summary["interrupted"] is False and summary["env_id"] == env_id
    assert summary["env_kwargs"] == (env_kwargs or {}), summary
    assert summary["env_steps"] >= STEPS and summary["updates"] >= 1, summary
    policy = stack.run_dir / "policy.onnx"
    assert policy.is_file() and summary["policy_path"] == str(policy)

    played = _play(policy, env_id, env_kwargs)
    assert played.returncode == 0, played.stderr
    assert "mean over 2 episodes" in played.stdout, played.stdout
    return summary, policy


@pytest.mark.e2e
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_any_gymnasium_env_trains_with_nothing_but_its_id(stack, env_id: str) -> None:
    # the default preset is the T-Maze's, as `make train` uses it: its kwargs must stay with the T-Maze
    summary, _ = train_then_play(stack, env_id)
    assert summary["episodes"] >= 1, summary
    status = stack.status()
    assert status is not None and status["env_steps"] >= STEPS, status


@pytest.mark.e2e
def test_an_image_env_trains_through_the_cnn_encoder(stack) -> None:
    pytest.importorskip("minigrid", reason="the minigrid extra is not installed (make extras)")
    _, policy = train_then_play(stack, "agalite/MiniGrid-MemoryS7-v0", {"view": "pixels"})
    meta = json.loads(policy.with_suffix(".json").read_text())
    assert meta["obs_shape"] == [56, 56, 3] and meta["obs_dtype"] == "uint8", meta
    assert "Conv" in {node.op_type for node in onnx.load(str(policy)).graph.node}  # the auto encoder chose the CNN
    ppo = json.loads((policy.parent / "config.json").read_text())["ppo"]
    assert (ppo["epochs"], ppo["minibatches"]) == (1, 1), ppo  # images: one gradient pass per batch
