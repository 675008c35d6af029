"""Weights-only updates: every parameter its own initializer, and new weights == a full re-export."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from export import export_step_function, weights_for
from policy.metadata import PolicyError
from policy.runtime import StepFunction
from policy.weights import replace_initializers
from tests.helpers.export_models import KIND_PARAMS, build, perturb


def _outputs(fn: StepFunction, steps: int = 40, batch: int = 3, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    state = fn.initial_state(batch)
    outs = []
    for t in range(steps):
        obs = rng.standard_normal((batch, *fn.metadata.obs_shape)).astype(np.float32)
        reset = (rng.random(batch) < 0.1) | (t == 0)
        logits, value, state = fn.run(obs, reset, state)
        outs += [logits, value]
    return outs


@pytest.mark.parametrize(("kind", "overrides"), KIND_PARAMS)
def test_weights_only_update_equals_full_reexport(kind: str, overrides: dict) -> None:
    ac = build(kind, overrides)
    first = export_step_function(ac, policy_version=0)
    model = onnx.load_from_string(first.onnx_bytes)
    inits = [i.name for i in model.graph.initializer]
    assert len(inits) == len(set(inits))
    # every parameter is its own initializer, under its own name, and none is a graph input
    assert set(first.metadata["weights"]) == {n for n, _ in ac.named_parameters()}
    assert set(first.metadata["weights"]) <= set(inits)
    assert not set(inits) & {i.name for i in model.graph.input}

    perturb(ac)
    full = export_step_function(ac, policy_version=1)
    assert full.graph_sha256 == first.graph_sha256
    weights = weights_for(ac, first)
    live = StepFunction.from_bytes(first.onnx_bytes)
    updated = live.with_weights(weights, policy_version=1)
    reference = StepFunction.from_bytes(full.onnx_bytes)
    patched = StepFunction.from_bytes(replace_initializers(first.onnx_bytes, weights))
    assert updated.metadata.policy_version == 1

    before, after, ref, via_patch = (_outputs(f) for f in (live, updated, reference, patched))
    for a, b, c in zip(after, ref, via_patch, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(c, b)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_equal_valued_parameters_stay_separate() -> None:
    """Fresh LayerNorm weights are all ones: the exporter must not merge them (changing one changes one)."""
    ac = build("agalite")
    ln = [n for n, p in ac.named_parameters() if torch.all(p == 1) and p.dim() == 1]
    assert len(ln) >= 2, ln
    first = export_step_function(ac)
    with torch.no_grad():
        dict(ac.named_parameters())[ln[-1]].mul_(1.5)
    full = StepFunction.from_bytes(export_step_function(ac).onnx_bytes)
    live = StepFunction.from_bytes(first.onnx_bytes)
    updated = live.with_weights({ln[-1]: weights_for(ac, first)[ln[-1]]})
    for a, b in zip(_outputs(updated), _outputs(full), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(_outputs(live), _outputs(updated), strict=True))


def test_weights_are_private_copies() -> None:
    """Arrays handed over may be changed afterwards without touching the live session, and vice versa."""
    ac = build("gru")
    exported = export_step_function(ac)
    weights = weights_for(ac, exported)
    fn = StepFunction.from_bytes(exported.onnx_bytes).with_weights(weights)
    expected = _outputs(fn)
    for arr in weights.values():
        arr[...] = 0.0
    with torch.no_grad():
        for p in ac.parameters():
            p.add_(1.0)
    for a, b in zip(_outputs(fn), expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_weights_are_refused() -> None:
    ac = build("lstm")
    exported = export_step_function(ac)
    fn = StepFunction.from_bytes(exported.onnx_bytes)
    name, shape = next(iter(fn.metadata.weights.items()))
    with pytest.raises(PolicyError, match="no weights named"):
        fn.with_weights({"nope": np.zeros(3, np.float32)})
    with pytest.raises(PolicyError, match="expected shape"):
        fn.with_weights({name: np.zeros((*shape, 2), np.float32)})
    with pytest.raises(PolicyError, match="dtype float32"):
        fn.with_weights({name: np.zeros(shape, np.float64)})
    with pytest.raises(PolicyError, match="non-finite"):
        fn.with_weights({name: np.full(shape, np.nan, np.float32)})


def test_patcher_refuses_what_does_not_fit() -> None:
    """The one initializer patcher checks names, shapes and that the target is float32 raw data."""
    exported = export_step_function(build("lstm"))
    name, shape = next(iter(exported.policy_metadata.weights.items()))
    with pytest.raises(PolicyError, match="no initializers named"):
        replace_initializers(exported.onnx_bytes, {"nope": np.zeros(3, np.float32)})
    with pytest.raises(PolicyError, match="shape"):
        replace_initializers(exported.onnx_bytes, {name: np.zeros((*shape, 2), np.float32)})
    with pytest.raises(PolicyError, match="cannot parse"):
        replace_initializers(b"\xff not a model", {name: np.zeros(shape, np.float32)})
