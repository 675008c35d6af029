"""Where ONNX Runtime runs a policy: the provider choice for --device, the one-line refusal of --device cuda when
the installed onnxruntime has no CUDA provider (this machine's CPU build; on a GPU build those two tests skip), and
the I/O-bound step that keeps the recurrent state on the session's device (checked here on the CPU device, where it
must equal the plain step exactly)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from policy.metadata import PolicyError
from policy.runtime import Policy, StepFunction, providers_for
from tests.helpers.policy_files import TMAZE_KWARGS, export_tmaze_policy

ROOT = Path(__file__).resolve().parents[2]
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
NO_CUDA = pytest.mark.skipif(CUDA in ort.get_available_providers(), reason="this onnxruntime has a CUDA provider")


def test_provider_choice_per_device() -> None:
    assert providers_for("cpu", [CUDA, CPU]) == [CPU]
    assert providers_for("cuda", [CUDA, CPU]) == [CUDA, CPU]  # CPU stays as ONNX Runtime's fallback for odd ops
    assert providers_for("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert providers_for("auto", [CPU]) == [CPU]
    with pytest.raises(PolicyError, match="device cuda needs onnxruntime-gpu"):
        providers_for("cuda", [CPU])
    with pytest.raises(PolicyError, match="unknown device 'tpu'"):
        providers_for("tpu", [CPU])


def test_a_session_runs_on_the_chosen_providers(tmp_path: Path) -> None:
    path = export_tmaze_policy(tmp_path / "policy.onnx")
    fn = StepFunction.from_file(path, providers=providers_for("cpu"))
    assert fn.providers == [CPU]
    auto = StepFunction.from_file(path, providers=providers_for("auto"))
    assert auto.providers == providers_for("auto")


@NO_CUDA
def test_the_actor_refuses_device_cuda_without_onnxruntime_gpu_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "actor", "--device", "cuda", "--learner-host", "127.0.0.1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "device cuda needs onnxruntime-gpu" in result.stderr and "--device cpu" in result.stderr
    assert "Traceback" not in result.stderr


@NO_CUDA
def test_actor_play_refuses_device_cuda_without_onnxruntime_gpu_in_one_line(tmp_path: Path) -> None:
    path = export_tmaze_policy(tmp_path / "policy.onnx")
    result = subprocess.run(
        [sys.executable, "-m", "actor.play", str(path), "--env", "agalite/TMaze-v0", "--env-kwargs",
         f'{{"corridor_length": {TMAZE_KWARGS["corridor_length"]}}}', "--device", "cuda"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: device cuda needs onnxruntime-gpu")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("kind", ["gtrxl", "agalite", "lstm"])
def test_a_policy_with_its_state_bound_to_the_device_steps_as_the_plain_one(tmp_path: Path, kind: str) -> None:
    fn = StepFunction.from_file(export_tmaze_policy(tmp_path / "policy.onnx", kind=kind), providers=[CPU])
    plain, bound = Policy(fn, batch=3), Policy(fn, batch=3, bind_state=True)
    rng = np.random.default_rng(0)
    meta = fn.metadata
    for t in range(12):
        obs = rng.normal(size=(3, *meta.obs_shape)).astype(meta.obs_dtype)
        reset = np.array([t == 0, t % 5 == 0, t == 7])
        for a, b in zip(plain.step(obs, reset), bound.step(obs, reset), strict=True):
            np.testing.assert_array_equal(a, b)
        if t == 6:  # a bootstrap value from the current state leaves the state where it was
            np.testing.assert_array_equal(plain.value_of(obs, reset), bound.value_of(obs, reset))
        if t == 8:  # a partial reset and a state put back go through the device copy as well
            plain.reset_state(np.array([True, False, False]))
            bound.reset_state(np.array([True, False, False]))
        if t == 10:
            snapshot = plain.state
            plain.set_state(snapshot)
            bound.set_state(snapshot)
    for name, value in plain.state.items():
        np.testing.assert_array_equal(bound.state[name], value, err_msg=name)
