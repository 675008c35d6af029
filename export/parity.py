"""Torch vs ONNX Runtime parity of a step function: the check behind tests and ``python -m export --verify``.

Both sides run the same random episode stream step by step (T=1), each feeding back its *own* state, so errors that
accumulate through the recurrence show up, as they would in an actor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from models.actor_critic import ActorCritic
from policy.runtime import StepFunction


def random_observations(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Observations covering the model's input range: standard normal floats, full-range integers."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


def check_parity(
    ac: ActorCritic,
    onnx_bytes: bytes,
    steps: int = 300,
    batch: int = 1,
    reset_prob: float = 0.05,
    seed: int = 0,
    intra_op_threads: int = 1,
) -> dict[str, Any]:
    """Run ``steps`` steps on ``batch`` envs with resets at random places (and at step 0) in torch and ONNX Runtime.

    Returns the max abs differences ``logits`` (the policy output: logits, or means and log stds), ``value`` and
    ``state`` (float state tensors, after each step) and
    ``state_mismatch`` (count of differing integer/bool state elements), plus ``steps``, ``batch`` and ``resets``.
    """
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1, got steps={steps}, batch={batch}")
    fn = StepFunction.from_bytes(onnx_bytes, intra_op_threads=intra_op_threads, providers=["CPUExecutionProvider"])
    meta = fn.metadata
    rng = np.random.default_rng(seed)
    was_training = ac.training
    ac.eval()
    device = next(ac.parameters()).device
    t_state = {k: v.to(device) for k, v in ac.initial_state(batch).items()}
    o_state = fn.initial_state(batch)
    worst = {"logits": 0.0, "value": 0.0, "state": 0.0}
    mismatch = 0
    resets = 0
    try:
        with torch.no_grad():
            for t in range(steps):
                obs = random_observations(rng, (batch, *meta.obs_shape), np.dtype(meta.obs_dtype))
                reset = rng.random(batch) < reset_prob
                if t == 0:
                    reset[:] = True
                resets += int(reset.sum())
                logits, value, t_state = ac(
                    torch.from_numpy(obs).to(device)[None], torch.from_numpy(reset).to(device)[None], t_state
                )
                o_logits, o_value, o_state = fn.run(obs, reset, o_state)
                worst["logits"] = max(worst["logits"], float(np.abs(logits[0].cpu().numpy() - o_logits).max()))
                worst["value"] = max(worst["value"], float(np.abs(value[0].cpu().numpy() - o_value).max()))
                for name, tv in t_state.items():
                    a, b = tv.cpu().numpy(), o_state[name]
                    if np.issubdtype(a.dtype, np.floating):
                        worst["state"] = max(worst["state"], float(np.abs(a - b).max()))
                    else:
                        mismatch += int((a != b).sum())
    finally:
        ac.train(was_training)
    return {**worst, "state_mismatch": mismatch, "steps": steps, "batch": batch, "resets": resets}
