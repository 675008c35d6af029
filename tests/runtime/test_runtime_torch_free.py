"""The runtime, actor.play and the embedding example run without torch, in fresh processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers.policy_files import TMAZE_KWARGS, export_tmaze_policy

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory) -> Path:
    return export_tmaze_policy(tmp_path_factory.mktemp("agalite"), kind="agalite")


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, **kw)


def test_runtime_never_imports_torch(policy_path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import policy.runtime, actor.play
        from policy.runtime import Policy, StepFunction
        fn = StepFunction.from_file({str(policy_path)!r})
        policy = Policy(fn, batch=2)
        obs = np.zeros((2, *fn.metadata.obs_shape), np.float32)
        action, logp, value = policy.act(obs, np.ones(2, bool), np.random.default_rng(0))
        assert action.shape == (2,) and value.shape == (2,)
        fn2 = fn.with_weights({{}}, policy_version=1)
        actor.play.play(fn2, "agalite/TMaze-v0", 1, env_kwargs={TMAZE_KWARGS!r})
        heavy = [m for m in ("torch", "onnx") if m in sys.modules]
        assert not heavy, heavy
        print("ok")
        """
    )
    r = _run(["-c", code])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("ok")


def test_play_cli_reports_episodes_and_means(policy_path) -> None:
    r = _run(
        [
            "-m",
            "actor.play",
            str(policy_path),
            "--env",
            "agalite/TMaze-v0",
            "--episodes",
            "3",
            "--seed",
            "4",
            "--env-kwargs",
            '{"corridor_length": 4}',
        ]
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    episodes = [ln for ln in lines if ln.startswith("episode ")]
    assert len(episodes) == 3 and all("return" in ln and "length" in ln and "success" in ln for ln in episodes)
    assert lines[-1].startswith("mean over 3 episodes: return")
    again = _run(
        [
            "-m",
            "actor.play",
            str(policy_path),
            "--env",
            "agalite/TMaze-v0",
            "--episodes",
            "3",
            "--seed",
            "4",
            "--env-kwargs",
            '{"corridor_length": 4}',
        ]
    )
    assert again.stdout == r.stdout  # seeded: the same run twice
    greedy = _run(
        [
            "-m",
            "actor.play",
            str(policy_path),
            "--env",
            "agalite/TMaze-v0",
            "--episodes",
            "1",
            "--greedy",
            "--env-kwargs",
            '{"corridor_length": 4}',
        ]
    )
    assert greedy.returncode == 0, greedy.stderr


def test_play_cli_errors(policy_path, tmp_path) -> None:
    missing = _run(["-m", "actor.play", str(tmp_path / "nope.onnx"), "--env", "agalite/TMaze-v0"])
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    wrong_env = _run(
        [
            "-m",
            "actor.play",
            str(policy_path),
            "--env",
            "agalite/TMaze-v0",
            "--env-kwargs",
            '{"corridor_length": 4, "num_distractors": 2}',
        ]
    )
    assert wrong_env.returncode == 2 and "the policy expects" in wrong_env.stderr


def test_embedding_example_runs(policy_path) -> None:
    r = _run(
        [
            str(REPO / "examples" / "embed_policy.py"),
            str(policy_path),
            "--episodes",
            "2",
            "--env-kwargs",
            '{"corridor_length": 4}',
        ]
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("episode ") == 2 and "return" in r.stdout
