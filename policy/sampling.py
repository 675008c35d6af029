"""Seeded action sampling outside the graph (numpy only): the step function returns distribution parameters and
the caller draws, so a run is reproducible from its seed and records the log-probability of what it drew."""

from __future__ import annotations

import numpy as np

from policy.metadata import PolicyError

__all__ = ["clip_action", "log_softmax", "sample_actions", "sample_gaussian"]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis, in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def sample_actions(
    logits: np.ndarray, rng: np.random.Generator, *, greedy: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Actions ``[B]`` (int64) drawn from ``softmax(logits)`` by inverse CDF with one uniform per env, and their
    log-probabilities ``[B]`` (float32). ``greedy`` takes the argmax (still reporting its log-probability)."""
    logp_all = log_softmax(logits)
    if greedy:
        actions = logp_all.argmax(axis=-1)
    else:
        cdf = np.cumsum(np.exp(logp_all), axis=-1)
        u = np.asarray(rng.random(logp_all.shape[0]))[:, None] * cdf[:, -1:]
        actions = np.minimum((cdf < u).sum(axis=-1), logp_all.shape[-1] - 1)
    actions = actions.astype(np.int64)
    logp = np.take_along_axis(logp_all, actions[:, None], axis=-1)[:, 0]
    return actions, logp.astype(np.float32)


_HALF_LOG_2PI = 0.5 * float(np.log(2.0 * np.pi))


def sample_gaussian(
    params: np.ndarray, rng: np.random.Generator, *, greedy: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Continuous actions ``[B, A]`` (float32) from a diagonal Gaussian whose means and log stds are
    ``params[B, 2A]`` (means first), and their log-densities ``[B]`` (float32, summed over dimensions).
    ``greedy`` takes the mean. The actions are not clipped: the learner needs the density of what was drawn;
    clip to the env's bounds when stepping it (``clip_action``)."""
    p = np.asarray(params, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] % 2:
        raise PolicyError(f"Gaussian policy output must be [B, 2A], got shape {p.shape}")
    mean, log_std = np.split(p, 2, axis=1)
    z = np.zeros_like(mean) if greedy else rng.standard_normal(mean.shape)
    actions = mean + np.exp(log_std) * z
    logp = (-0.5 * z * z - log_std - _HALF_LOG_2PI).sum(axis=1)
    return actions.astype(np.float32), logp.astype(np.float32)


def clip_action(action: np.ndarray | np.integer | np.floating, space: object) -> np.ndarray | int:
    """What an env is stepped with: an int for Discrete spaces; a Box action clipped to finite bounds."""
    low, high = getattr(space, "low", None), getattr(space, "high", None)
    if low is None or high is None:
        return int(action)
    return np.clip(action, low, high).astype(getattr(space, "dtype", np.float32), copy=False)
