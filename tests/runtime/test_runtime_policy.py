"""StepFunction and Policy behaviour: state carrying, sampling, value_of, swap, and errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from policy.metadata import METADATA_KEY, PolicyError, PolicyMetadata
from policy.runtime import Policy, StepFunction
from policy.sampling import log_softmax, sample_actions
from tests.helpers.policy_files import export_tmaze_policy


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory) -> Path:
    return export_tmaze_policy(tmp_path_factory.mktemp("gtrxl"))


@pytest.fixture(scope="module")
def fn(policy_path) -> StepFunction:
    return StepFunction.from_file(policy_path)


def _obs(fn: StepFunction, batch: int, rng: np.random.Generator) -> np.ndarray:
    return rng.random((batch, *fn.metadata.obs_shape)).astype(np.float32)


def test_policy_carries_state_like_run(fn) -> None:
    rng = np.random.default_rng(0)
    policy = Policy(fn, batch=2)
    state = fn.initial_state(2)
    for t in range(6):
        obs, reset = _obs(fn, 2, rng), np.array([t == 0, t in (0, 3)])
        logits, value, state = fn.run(obs, reset, state)
        p_logits, p_value = policy.step(obs, reset)
        np.testing.assert_array_equal(p_logits, logits)
        np.testing.assert_array_equal(p_value, value)
    for name, v in policy.state.items():
        np.testing.assert_array_equal(v, state[name])


def test_value_of_does_not_advance_and_state_is_a_copy(fn) -> None:
    rng = np.random.default_rng(1)
    policy = Policy(fn, batch=3)
    policy.step(_obs(fn, 3, rng), np.ones(3, bool))
    before = policy.state
    before["mask"][:] = ~before["mask"]  # editing the copy must not touch the policy
    obs = _obs(fn, 3, rng)
    v1 = policy.value_of(obs, np.zeros(3, bool))
    v2 = policy.value_of(obs, np.zeros(3, bool))
    np.testing.assert_array_equal(v1, v2)
    _, v3 = policy.step(obs, np.zeros(3, bool))
    np.testing.assert_array_equal(v1, v3)


def test_reset_state_restores_initial_values(fn) -> None:
    rng = np.random.default_rng(2)
    policy = Policy(fn, batch=2)
    for _ in range(3):
        policy.step(_obs(fn, 2, rng), np.zeros(2, bool))
    stepped = policy.state
    policy.reset_state(np.array([True, False]))
    fresh = fn.initial_state(2)
    for name, v in policy.state.items():
        np.testing.assert_array_equal(v[0], fresh[name][0])
        np.testing.assert_array_equal(v[1], stepped[name][1])
    policy.reset_state()
    for name, v in policy.state.items():
        np.testing.assert_array_equal(v, fresh[name])


def test_act_is_reproducible_and_logp_matches(fn) -> None:
    def run(seed: int):
        rng_obs, rng = np.random.default_rng(5), np.random.default_rng(seed)
        policy = Policy(fn, batch=4)
        out = []
        for t in range(10):
            out.append(policy.act(_obs(fn, 4, rng_obs), np.full(4, t == 0), rng))
        return out

    a, b = run(7), run(7)
    for (x1, l1, v1), (x2, l2, v2) in zip(a, b, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(l1, l2)
        np.testing.assert_array_equal(v1, v2)
        assert x1.dtype == np.int64 and l1.dtype == np.float32 and np.all(l1 <= 0)


def test_sampling_follows_the_softmax() -> None:
    logits = np.array([[2.0, 0.0, -1.0, 1.0]], dtype=np.float32).repeat(20000, axis=0)
    actions, logp = sample_actions(logits, np.random.default_rng(0))
    probs = np.exp(log_softmax(logits[0]))
    freq = np.bincount(actions, minlength=4) / len(actions)
    np.testing.assert_allclose(freq, probs, atol=0.015)  # 20000 draws: sd of each frequency < 0.0036
    np.testing.assert_allclose(logp, np.log(probs)[actions], rtol=1e-6)
    greedy, glogp = sample_actions(logits[:2], np.random.default_rng(0), greedy=True)
    assert greedy.tolist() == [0, 0] and np.allclose(glogp, np.log(probs[0]))
    # huge logits stay finite
    big = np.array([[1e4, 0.0, -1e4]], dtype=np.float32)
    a, lp = sample_actions(big, np.random.default_rng(0))
    assert a.tolist() == [0] and np.isfinite(lp).all()


def test_swap_keeps_state_and_refuses_other_layouts(fn, policy_path, tmp_path) -> None:
    rng = np.random.default_rng(3)
    other = StepFunction.from_file(export_tmaze_policy(tmp_path / "same", seed=1))
    policy = Policy(fn, batch=2)
    policy.step(_obs(fn, 2, rng), np.ones(2, bool))
    state = policy.state
    policy.swap(other)
    assert policy.step_function is other
    for name, v in policy.state.items():
        np.testing.assert_array_equal(v, state[name])
    lstm = StepFunction.from_file(export_tmaze_policy(tmp_path / "lstm", kind="lstm"))
    with pytest.raises(PolicyError, match="different recurrent state"):
        policy.swap(lstm)
    bigger = StepFunction.from_file(export_tmaze_policy(tmp_path / "m16", memory_len=16))
    with pytest.raises(PolicyError, match="different recurrent state"):
        policy.swap(bigger)


def test_input_errors_name_expected_and_got(fn) -> None:
    d = fn.metadata.obs_shape[0]
    state = fn.initial_state(2)
    obs = np.zeros((2, d), np.float32)
    reset = np.zeros(2, bool)
    with pytest.raises(PolicyError, match=rf"obs: expected shape \(B, {d}\), got \(2, {d + 1}\)"):
        fn.run(np.zeros((2, d + 1), np.float32), reset, state)
    with pytest.raises(PolicyError, match="obs: expected dtype float32, got float64"):
        fn.run(np.zeros((2, d)), reset, state)
    with pytest.raises(PolicyError, match="obs must be a numpy array"):
        fn.run([[0.0] * d] * 2, reset, state)
    with pytest.raises(PolicyError, match=r"reset: expected shape \(2,\)"):
        fn.run(obs, np.zeros(3, bool), state)
    with pytest.raises(PolicyError, match="reset: expected a bool array"):
        fn.run(obs, np.zeros(2, np.float32), state)
    with pytest.raises(PolicyError, match=r"state: expected names \['mask', 'memory'\], got \['memory'\]"):
        fn.run(obs, reset, {"memory": state["memory"]})
    bad = dict(state, memory=state["memory"][:, :1])
    with pytest.raises(PolicyError, match=r"state 'memory': expected shape \(2, "):
        fn.run(obs, reset, bad)
    with pytest.raises(PolicyError, match="state 'mask': expected dtype bool, got float32"):
        fn.run(obs, reset, dict(state, mask=state["mask"].astype(np.float32)))
    with pytest.raises(PolicyError, match="expected a batch of 3 observations"):
        Policy(fn, batch=3).step(obs, reset)
    # integer resets are accepted as flags
    fn.run(obs, np.array([1, 0]), state)


def test_file_errors(policy_path, tmp_path) -> None:
    with pytest.raises(PolicyError, match="does not exist"):
        StepFunction.from_file(tmp_path / "missing.onnx")
    with pytest.raises(PolicyError, match="cannot load"):
        StepFunction.from_bytes(b"this is not an onnx model")
    data = policy_path.read_bytes()
    (tmp_path / "truncated.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(PolicyError, match=r"truncated\.onnx"):
        StepFunction.from_file(tmp_path / "truncated.onnx")
    with pytest.raises(PolicyError, match="onnx_bytes must be bytes"):
        StepFunction.from_bytes("policy.onnx")  # type: ignore[arg-type]  # the wrong type on purpose


def _with_metadata(policy_path: Path, edit) -> bytes:
    model = onnx.load(policy_path)
    props = {p.key: p.value for p in model.metadata_props}
    del model.metadata_props[:]
    new = edit(props)
    if new is not None:
        onnx.helper.set_model_props(model, new)
    return model.SerializeToString()


def test_metadata_errors(policy_path) -> None:
    def other_protocol(props):
        meta = PolicyMetadata.from_json(props[METADATA_KEY]).to_dict()
        meta["protocol_version"] = meta["protocol_version"] + 1
        return {METADATA_KEY: PolicyMetadata.from_dict(meta).to_json()}

    with pytest.raises(PolicyError, match="protocol major version 2, this code speaks 1"):
        StepFunction.from_bytes(_with_metadata(policy_path, other_protocol))
    with pytest.raises(PolicyError, match=r"has no 'agalite_rl\.policy' metadata"):
        StepFunction.from_bytes(_with_metadata(policy_path, lambda props: None))
    with pytest.raises(PolicyError, match="not valid JSON"):
        StepFunction.from_bytes(_with_metadata(policy_path, lambda props: {METADATA_KEY: "{oops"}))

    def lost_key(props):
        meta = PolicyMetadata.from_json(props[METADATA_KEY]).to_dict()
        del meta["state"]
        import json

        return {METADATA_KEY: json.dumps(meta)}

    with pytest.raises(PolicyError, match="lacks the key 'state'"):
        StepFunction.from_bytes(_with_metadata(policy_path, lost_key))


def test_gaussian_sampling_matches_its_log_density_and_is_seeded() -> None:
    from policy.sampling import clip_action, sample_gaussian

    params = np.array([[0.5, -1.0, np.log(0.2), 0.0], [2.0, 0.0, -1.0, 0.5]], dtype=np.float32)  # B=2, A=2
    a1, lp1 = sample_gaussian(params, np.random.default_rng(4))
    a2, lp2 = sample_gaussian(params, np.random.default_rng(4))
    assert a1.dtype == np.float32 and a1.shape == (2, 2) and np.array_equal(a1, a2) and np.array_equal(lp1, lp2)
    mean, log_std = params[:, :2].astype(np.float64), params[:, 2:].astype(np.float64)
    dens = (-0.5 * ((a1 - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi)).sum(1)
    assert np.allclose(lp1, dens, atol=1e-5)
    greedy, _ = sample_gaussian(params, np.random.default_rng(0), greedy=True)
    assert np.allclose(greedy, mean)
    many, _ = sample_gaussian(np.repeat(params[:1], 20000, axis=0), np.random.default_rng(1))
    assert np.allclose(many.mean(0), [0.5, -1.0], atol=0.03) and np.allclose(many.std(0), [0.2, 1.0], atol=0.03)
    with pytest.raises(PolicyError, match=r"\[B, 2A\]"):
        sample_gaussian(params[:, :3], np.random.default_rng(0))
    from gymnasium import spaces

    assert np.array_equal(clip_action(np.array([3.0, -0.5], np.float32), spaces.Box(-1, 1, (2,))), [1.0, -0.5])
    assert clip_action(np.int64(2), spaces.Discrete(4)) == 2
