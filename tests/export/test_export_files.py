"""Export to bytes vs file, metadata round trips, checker, checkpoints and the CLI."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from gymnasium import spaces

from export import (
    checkpoint_dict,
    export_from_checkpoint,
    export_step_function,
    load_actor_critic_from_checkpoint,
    save_policy,
)
from learner.checkpoint import save_checkpoint
from policy.metadata import METADATA_KEY, PolicyError, PolicyMetadata, space_from_dict, space_to_dict
from policy.runtime import StepFunction
from tests.helpers.export_models import ACT_SPACE, OBS_SPACE, build

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gtrxl():
    return build("gtrxl", {"memory_form": "kv"})


def test_file_equals_bytes_and_metadata_round_trips(gtrxl, tmp_path: Path) -> None:
    exported = export_step_function(
        gtrxl, policy_version=7, extra_metadata={"run": "abc"}, observation_space=OBS_SPACE, action_space=ACT_SPACE
    )
    path = save_policy(exported, tmp_path / "out")
    assert path == tmp_path / "out" / "policy.onnx"
    assert path.read_bytes() == exported.onnx_bytes
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left behind

    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    embedded = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar.pop("onnx_sha256") == exported.sha256
    assert embedded == sidecar == exported.metadata

    meta = PolicyMetadata.from_dict(embedded)
    assert PolicyMetadata.from_json(meta.to_json()) == meta
    assert meta.policy_version == 7 and meta.extra == {"run": "abc"} and meta.model_kind == "gtrxl"
    assert meta.model_config == gtrxl.cfg.to_dict()
    assert space_from_dict(meta.observation_space) == OBS_SPACE and space_from_dict(meta.action_space) == ACT_SPACE
    assert meta.inputs == ("obs", "reset", "kv", "mask")
    assert meta.outputs == ("logits", "value", "new_kv", "new_mask")
    spec = gtrxl.state_spec()
    assert [(s.name, s.shape) for s in meta.state] == [(n, tuple(v.shape)) for n, v in spec.items()]
    assert {s.name: s.dtype for s in meta.state} == {"kv": "float32", "mask": "bool"}
    assert meta.torch_version == torch.__version__ and meta.graph_sha256 == exported.graph_sha256

    # the file and the bytes give one and the same function
    a, b = StepFunction.from_file(path), StepFunction.from_bytes(exported.onnx_bytes)
    assert a.metadata == b.metadata == meta
    rng = np.random.default_rng(0)
    obs = rng.random((3, 7), dtype=np.float32)
    reset = np.array([True, False, True])
    out_a, out_b = a.run(obs, reset, a.initial_state(3)), b.run(obs, reset, b.initial_state(3))
    np.testing.assert_array_equal(out_a[0], out_b[0])
    np.testing.assert_array_equal(out_a[1], out_b[1])
    # the initial state recorded in the metadata is the model's (GTrXL's mask starts all-masked)
    for name, value in gtrxl.initial_state(3).items():
        np.testing.assert_array_equal(a.initial_state(3)[name], value.numpy())


def test_save_to_onnx_path_and_overwrite(gtrxl, tmp_path: Path) -> None:
    first = export_step_function(gtrxl, policy_version=1)
    second = export_step_function(gtrxl, policy_version=2)
    target = tmp_path / "deploy" / "agent.onnx"
    save_policy(first, target)
    save_policy(second, target)
    assert target.read_bytes() == second.onnx_bytes
    assert json.loads(target.with_suffix(".json").read_text())["policy_version"] == 2
    assert first.graph_sha256 == second.graph_sha256 and first.sha256 != second.sha256


def test_export_is_deterministic(gtrxl) -> None:
    assert export_step_function(gtrxl).onnx_bytes == export_step_function(gtrxl).onnx_bytes


@pytest.mark.parametrize(
    "space",
    [
        spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32),
        spaces.Box(np.array([-np.inf, 0.0]), np.array([np.inf, 2.0]), dtype=np.float64),
        spaces.Box(0, 255, shape=(4, 4, 3), dtype=np.uint8),
        spaces.Discrete(5),
        spaces.Discrete(3, start=-1),
    ],
)
def test_space_round_trip(space) -> None:
    data = space_to_dict(space)
    assert space_from_dict(json.loads(json.dumps(data, allow_nan=False))) == space


def test_space_errors() -> None:
    with pytest.raises(PolicyError, match="Box and Discrete"):
        space_to_dict(spaces.MultiBinary(3))
    with pytest.raises(PolicyError, match="unsupported space type"):
        space_from_dict({"type": "Tuple"})


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    ac = build("agalite")
    path = tmp_path / "ck.pt"
    torch.save({**checkpoint_dict(ac, OBS_SPACE, ACT_SPACE, policy_version=12), "optimizer": {}}, path)
    loaded = load_actor_critic_from_checkpoint(path)
    assert loaded.policy_version == 12 and loaded.observation_space == OBS_SPACE
    for (n1, p1), (n2, p2) in zip(ac.state_dict().items(), loaded.ac.state_dict().items(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2)
    exported = export_from_checkpoint(str(path))
    assert exported.policy_metadata.policy_version == 12
    assert (
        exported.onnx_bytes
        == export_step_function(ac, policy_version=12, observation_space=OBS_SPACE, action_space=ACT_SPACE).onnx_bytes
    )

    with pytest.raises(PolicyError, match="does not exist"):
        load_actor_critic_from_checkpoint(tmp_path / "missing.pt")
    torch.save({"model_state": {}}, tmp_path / "bad.pt")
    with pytest.raises(PolicyError, match="lacks keys"):
        load_actor_critic_from_checkpoint(tmp_path / "bad.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PolicyError, match="cannot read checkpoint"):
        load_actor_critic_from_checkpoint(tmp_path / "junk.pt")


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "export", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_from_checkpoint_with_verify(tmp_path: Path) -> None:
    """The file is written as the learner writes its own, RNG states included: the numpy one is an ndarray, which
    ``torch.load(weights_only=True)`` refuses unless allowed (every learner checkpoint was once refused here)."""
    ac = build("gru")
    payload = {
        **checkpoint_dict(ac, OBS_SPACE, ACT_SPACE, policy_version=3),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state(),  # noqa: NPY002 - the learner saves the global generator's state
        "python_rng": random.getstate(),
    }
    path = save_checkpoint(tmp_path, payload)
    r = _run_cli("--checkpoint", str(path), "--out", str(tmp_path / "p.onnx"), "--verify", "--verify-steps", "50")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("-> ok") == 2 and "parity B=8" in r.stdout
    assert StepFunction.from_file(tmp_path / "p.onnx").metadata.policy_version == 3


def test_cli_fresh_model_and_help(tmp_path: Path) -> None:
    r = _run_cli(
        "--kind",
        "lstm",
        "--size",
        "small",
        "--env",
        "agalite/TMaze-v0",
        "--env-kwargs",
        '{"corridor_length": 4}',
        "--seed",
        "1",
        "--out",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    meta = StepFunction.from_file(tmp_path / "policy.onnx").metadata
    assert meta.model_kind == "lstm" and meta.num_actions == 4
    assert _run_cli("--help").returncode == 0
    bad = _run_cli("--kind", "lstm", "--out", str(tmp_path))
    assert bad.returncode != 0 and "--env" in bad.stderr
