"""Resuming with another environment, other spaces or other training settings is refused in one line unless
``--allow-config-change`` is passed; operational flags may change; config.json is never overwritten silently."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from learner.resume_check import config_changes

REPO = Path(__file__).resolve().parents[2]
PRESET = "test-tmaze-agalite"


@dataclass
class Result:
    returncode: int
    stderr: str


def _learner(run_dir: Path, ports: list[int], *flags: str) -> Result:
    """Run a learner until it is up (a fresh status.json), then stop it with SIGTERM (it checkpoints and exits 0);
    a learner that refuses to start exits by itself first."""
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
    status = run_dir / "status.json"
    started = time.time()
    err = run_dir.parent / f"stderr-{started}.log"
    with err.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "learner", "--preset", PRESET, "--run-dir", str(run_dir), *net, *flags],
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline:
            if status.is_file() and status.stat().st_mtime > started:
                proc.send_signal(signal.SIGTERM)
                break
            time.sleep(0.2)
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return Result(rc, err.read_text())


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
    first = _learner(run_dir, ports)
    assert first.returncode == 0, first.stderr[-3000:]
    config = run_dir / "config.json"
    original = config.read_text()

    # the probe's three changes at once (one start instead of three): each is named in the one-line refusal
    flags = ["--env.kwargs", '{"corridor_length": 100}', "--ppo.lr", "0.5", "--segment-length", "8"]
    refused = _learner(run_dir, ports, *flags)
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr, refused.stderr[-3000:]
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "--allow-config-change" in last, last
    for changed in ("observation_space.shape", "env.kwargs.corridor_length: 4 -> 100", "ppo.lr", "segment_length"):
        assert changed in last, last
    assert config.read_text() == original, "config.json was rewritten by a refused resume"

    # operational settings may change freely (here the ports and the checkpoint interval)
    ports2 = free_ports(3)
    same = _learner(run_dir, ports2, "--checkpoint-interval-s", "30")
    assert same.returncode == 0, same.stderr[-3000:]

    allowed = _learner(run_dir, ports, "--ppo.lr", "0.5", "--allow-config-change")
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert "resuming with a changed configuration (allowed): ppo.lr" in allowed.stderr
    assert json.loads(config.read_text())["ppo"]["lr"] == 0.5
    assert "allow_config_change" not in json.loads(config.read_text())
    kept = sorted(run_dir.glob("config.before-*.json"))
    assert kept, "the previous config.json was not kept"
    assert json.loads(kept[-1].read_text())["ppo"]["lr"] != 0.5
    assert json.loads(original)["ppo"]["lr"] in [json.loads(p.read_text())["ppo"]["lr"] for p in kept]
