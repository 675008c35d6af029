"""Resuming with another environment, other spaces or other training settings is refused in one line unless
``--allow-config-change`` is passed; operational flags may change; config.json is never overwritten silently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from learner.resume_check import config_changes

REPO = Path(__file__).resolve().parents[2]
PRESET = "test-tmaze-agalite"


def _learner(run_dir: Path, ports: list[int], *flags: str) -> subprocess.CompletedProcess:
    net = [
        "--net.host",
        "127.0.0.1",
        "--net.trajectory-port",
        str(ports[0]),
        "--net.policy-port",
        str(ports[1]),
        "--net.control-port",
        str(ports[2]),
    ]
    return subprocess.run(
        [sys.executable, "-m", "learner", "--preset", PRESET, "--run-dir", str(run_dir), *net, *flags],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_config_changes_compare_only_what_is_trained():
    old = {"env": {"id": "e", "kwargs": '{"a": 1}'}, "ppo": {"lr": 0.1}, "total_steps": 5, "seed": 1}
    assert config_changes(old, {**old, "total_steps": 10, "net": {"host": "x"}}) == []
    assert config_changes(old, {**old, "env": {"id": "e", "kwargs": '{ "a" : 1 }'}}) == []
    assert config_changes(old, {**old, "env": {"id": "e", "kwargs": '{"a": 2}'}}) == ["env.kwargs.a: 1 -> 2"]
    assert config_changes(old, {**old, "ppo": {"lr": 0.5}, "seed": 2}) == ["ppo.lr: 0.1 -> 0.5", "seed: 1 -> 2"]


@pytest.mark.e2e
def test_resume_refuses_a_changed_config_unless_allowed(tmp_path, free_ports):
    ports = free_ports(3)
    run_dir = tmp_path / "run"
    first = _learner(run_dir, ports, "--total-steps", "0")
    assert first.returncode == 0, first.stderr[-3000:]
    config = run_dir / "config.json"
    original = config.read_text()

    # the probe's three changes at once (one start instead of three): each is named in the one-line refusal
    flags = ["--env.kwargs", '{"corridor_length": 100}', "--ppo.lr", "0.5", "--segment-length", "8"]
    refused = _learner(run_dir, ports, "--total-steps", "0", *flags)
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr, refused.stderr[-3000:]
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "--allow-config-change" in last, last
    for changed in ("observation_space.shape", "env.kwargs.corridor_length: 4 -> 100", "ppo.lr", "segment_length"):
        assert changed in last, last
    assert config.read_text() == original, "config.json was rewritten by a refused resume"

    # operational settings may change freely (here the ports and the checkpoint interval)
    ports2 = free_ports(3)
    same = _learner(run_dir, ports2, "--total-steps", "0", "--checkpoint-interval-s", "30")
    assert same.returncode == 0, same.stderr[-3000:]

    allowed = _learner(run_dir, ports, "--total-steps", "0", "--ppo.lr", "0.5", "--allow-config-change")
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert "resuming with a changed configuration (allowed): ppo.lr" in allowed.stderr
    assert json.loads(config.read_text())["ppo"]["lr"] == 0.5
    assert "allow_config_change" not in json.loads(config.read_text())
    kept = sorted(run_dir.glob("config.before-*.json"))
    assert kept, "the previous config.json was not kept"
    assert json.loads(kept[-1].read_text())["ppo"]["lr"] != 0.5
    assert json.loads(original)["ppo"]["lr"] in [json.loads(p.read_text())["ppo"]["lr"] for p in kept]
