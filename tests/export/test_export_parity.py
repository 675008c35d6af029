"""Torch vs ONNX Runtime over hundreds of steps with random resets, for every model kind, B=1 and B=8."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from export import check_parity, export_step_function
from tests.helpers.export_models import KIND_PARAMS, build

TOL = 1e-4


@pytest.mark.parametrize(("kind", "overrides"), KIND_PARAMS)
def test_step_function_matches_torch(kind: str, overrides: dict) -> None:
    torch.set_num_threads(1)
    ac = build(kind, overrides)
    exported = export_step_function(ac)
    for batch, seed in ((1, 0), (8, 1)):
        r = check_parity(ac, exported.onnx_bytes, steps=300, batch=batch, reset_prob=0.05, seed=seed)
        assert r["resets"] > batch, r  # resets happened after the first step too
        assert r["logits"] < TOL and r["value"] < TOL, r
        assert r["state"] < TOL and r["state_mismatch"] == 0, r


def test_uint8_observations_are_fed_raw() -> None:
    """The graph takes the env's dtype (uint8 here) and converts inside, like torch does."""
    ac = build("lstm", obs_space=spaces.Box(0, 255, shape=(5,), dtype=np.uint8))
    exported = export_step_function(ac)
    assert exported.policy_metadata.obs_dtype == "uint8"
    r = check_parity(ac, exported.onnx_bytes, steps=50, batch=4, seed=3)
    assert r["logits"] < TOL and r["value"] < TOL, r


def test_continuous_policy_exports_its_gaussian_and_matches_torch() -> None:
    """A continuous-action policy: output ``mean_log_std`` (means then log stds), Box action space in the metadata,
    parity with torch, and a weights-only update that moves the log std."""
    from export import weights_for
    from policy.runtime import StepFunction

    box = spaces.Box(-2.0, 2.0, shape=(2,), dtype=np.float32)
    ac = build("agalite", act_space=box)
    exported = export_step_function(ac, action_space=box)
    meta = exported.policy_metadata
    assert meta.action_kind == "continuous" and meta.num_actions == 2
    assert meta.outputs[0] == "mean_log_std" and meta.action_space["type"] == "Box"
    r = check_parity(ac, exported.onnx_bytes, steps=60, batch=3, seed=2)
    assert r["logits"] < TOL and r["value"] < TOL, r
    fn = StepFunction.from_bytes(exported.onnx_bytes)
    with torch.no_grad():
        ac.log_std.fill_(-1.25)
    updated = fn.with_weights(weights_for(ac, exported))
    params, _, _ = updated.run(np.zeros((3, 7), np.float32), np.ones(3, bool), updated.initial_state(3))
    assert params.shape == (3, 4) and np.allclose(params[:, 2:], -1.25)


def test_action_spaces_that_do_not_fit_the_model_are_refused() -> None:
    from policy.metadata import PolicyError, action_space_mismatch

    assert action_space_mismatch(spaces.Discrete(3), "discrete", 3) is None
    assert action_space_mismatch(spaces.Box(-1, 1, (2,)), "continuous", 2) is None
    assert "2 continuous" in (action_space_mismatch(spaces.Box(-1, 1, (3,)), "continuous", 2) or "")
    assert "continuous" in (action_space_mismatch(spaces.Discrete(2), "continuous", 2) or "")
    assert "3 discrete" in (action_space_mismatch(spaces.Discrete(4), "discrete", 3) or "")
    with pytest.raises(PolicyError, match="does not fit 3 discrete actions"):
        export_step_function(build("lstm"), action_space=spaces.Discrete(4))
    box = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    with pytest.raises(PolicyError, match="does not fit 2 continuous action dimensions"):
        export_step_function(build("lstm", act_space=box), action_space=spaces.Box(-1, 1, (3,)))
