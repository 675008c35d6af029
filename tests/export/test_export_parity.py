"""Torch vs ONNX Runtime over hundreds of steps with random resets, for every model kind, B=1 and B=8."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_helpers import KIND_PARAMS, build
from gymnasium import spaces

from export import check_parity, export_step_function

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
