"""The actor's command line: every ActorConfig field has a generated AGALITE_<FIELD> twin, parsed like its flag."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import tyro

from actor.__main__ import args_from_environment, env_var_name
from actor.client import ActorConfig

ROOT = Path(__file__).resolve().parents[2]


def test_every_field_has_a_twin_parsed_with_its_type() -> None:
    values = {
        "learner_host": "10.0.0.5",
        "trajectory_port": "7005",
        "policy_port": "7006",
        "control_port": "7007",
        "actor_id": "a-1",
        "num_envs": "4",
        "seed": "9",
        "threads": "2",
        "device": "cpu",
        "curve_dir": "/keys",
        "max_segments": "3",
        "hello_timeout_s": "2.5",
    }
    assert set(values) == {f.name for f in dataclasses.fields(ActorConfig)}, "a new field needs a value here"
    environ = {env_var_name(k): v for k, v in values.items()}
    cfg = tyro.cli(ActorConfig, args=args_from_environment(ActorConfig, environ))
    assert cfg == ActorConfig(
        learner_host="10.0.0.5",
        trajectory_port=7005,
        policy_port=7006,
        control_port=7007,
        actor_id="a-1",
        num_envs=4,
        seed=9,
        threads=2,
        device="cpu",
        curve_dir="/keys",
        max_segments=3,
        hello_timeout_s=2.5,
    )


def test_flags_win_and_empty_variables_are_unset() -> None:
    environ = {"AGALITE_NUM_ENVS": "4", "AGALITE_SEED": "", "AGALITE_LEARNER_HOST": "env-host"}
    cfg = tyro.cli(ActorConfig, args=[*args_from_environment(ActorConfig, environ), "--num-envs", "6"])
    assert (cfg.num_envs, cfg.seed, cfg.learner_host) == (6, None, "env-host")


@pytest.mark.parametrize(
    ("name", "raw"),
    [("AGALITE_NUM_ENVS", "four"), ("AGALITE_HELLO_TIMEOUT_S", "soon"), ("AGALITE_DEVICE", "tpu")],
)
def test_a_bad_twin_is_one_line_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(SystemExit) as info:
        args_from_environment(ActorConfig, {name: raw})
    message = str(info.value.code)
    assert message.startswith(f"error: {name}={raw!r}") and "\n" not in message


def test_the_process_reports_a_bad_twin_without_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "actor"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "AGALITE_NUM_ENVS": "many"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "AGALITE_NUM_ENVS='many'" in result.stderr and "Traceback" not in result.stderr
