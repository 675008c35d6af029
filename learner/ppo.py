"""Recurrent PPO over whole trajectory segments, readable top to bottom.

The learner keeps no replay of its own: each update takes the segments that arrived, recomputes values with the
current weights from the recurrent states the actors stored at each segment start (truncated BPTT over T, no
burn-in, as in the paper's PPO), computes GAE once, then runs ``epochs`` passes over minibatches of whole env
sequences. The log-probabilities in the loss's ratio are the actor's, so a segment produced by a slightly older
policy (policy lag) is corrected by the clipped importance ratio like any PPO data.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import cast

import numpy as np
import torch
from torch import nn
from torch.distributions import kl_divergence

from learner import distributed
from learner.config import PPOConfig
from models.actor_critic import ActorCritic
from models.distributions import action_distribution
from models.normalization import RunningNorm, preserve_denormalized_outputs
from protocol import Segment

log = logging.getLogger("learner.ppo")


@dataclass
class Batch:
    """Segments stacked along the env axis, time-major, on the learner's device."""

    obs: torch.Tensor  # [T+1, N, *obs_shape]
    actions: torch.Tensor  # [T, N] int64 (discrete) or [T, N, A] float32 (continuous)
    logp: torch.Tensor  # [T, N] behaviour log-probabilities
    rewards: torch.Tensor  # [T, N]
    terminated: torch.Tensor  # [T, N] bool
    truncated: torch.Tensor  # [T, N] bool
    reset: torch.Tensor  # [T+1, N] bool
    bootstrap_values: torch.Tensor  # [T, N] V(final obs) where truncated, from the actor
    initial_state: dict[str, torch.Tensor]  # each [N, ...]

    @property
    def num_envs(self) -> int:
        return self.actions.shape[1]

    @property
    def num_steps(self) -> int:
        return self.actions.shape[0] * self.actions.shape[1]


def batch_from_segments(segments: Sequence[Segment], device: torch.device) -> Batch:
    def cat(name: str) -> torch.Tensor:
        arr = np.concatenate([getattr(s, name) for s in segments], axis=1)
        return torch.from_numpy(arr).to(device)

    names = segments[0].initial_state.keys()
    state = {
        n: torch.from_numpy(np.concatenate([s.initial_state[n] for s in segments], axis=0)).to(device) for n in names
    }
    return Batch(
        obs=cat("obs"),
        actions=cat("actions").long() if segments[0].actions.dtype.kind in "iu" else cat("actions").float(),
        logp=cat("logp").float(),
        rewards=cat("rewards").float(),
        terminated=cat("terminated").bool(),
        truncated=cat("truncated").bool(),
        reset=cat("reset").bool(),
        bootstrap_values=cat("bootstrap_values").float(),
        initial_state=state,
    )


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    bootstrap_values: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(lambda) with episode ends inside the segment.

    ``values`` has T+1 rows: values[T] bootstraps the segment's tail. A terminated step has no future; a truncated
    step (time limit) bootstraps from the value of its final observation, which the actor evaluated before the
    reset because obs[t+1] already belongs to the next episode. Returns (advantages, returns), each [T, N].
    """
    num_t = rewards.shape[0]
    done = terminated | truncated
    next_values = torch.where(truncated, bootstrap_values, values[1:])
    next_values = torch.where(terminated, torch.zeros_like(next_values), next_values)
    deltas = rewards + gamma * next_values - values[:-1]
    carry = (~done).to(rewards.dtype) * (gamma * gae_lambda)
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in reversed(range(num_t)):
        last = deltas[t] + carry[t] * last
        advantages[t] = last
    return advantages, advantages + values[:-1]


@dataclass
class LossOutput:
    loss: torch.Tensor
    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    entropy: torch.Tensor
    approx_kl: torch.Tensor
    clip_fraction: torch.Tensor
    old_approx_kl: torch.Tensor
    """CleanRL's first KL estimator, mean(-log ratio), logged beside the unbiased ``approx_kl``."""


def policy_kl(logits: torch.Tensor, batch: Batch, action_kind: str) -> float:
    """How far the learner's policy is from the one that acted, on the batch as it arrives (before any gradient step
    of its update): the estimator of ``approx_kl`` over every (t, env).

    Why: the per-minibatch KLs are read before each step too, but after earlier steps of the same update; this one
    is the gap the update starts from (policy lag, initial states written by older weights, the observation
    statistics' move on this batch), so a policy that changes without a large gradient step shows where it changed.
    """
    log_ratio = action_distribution(logits, action_kind).log_prob(batch.actions) - batch.logp
    return float(kl_estimate(log_ratio, log_ratio.exp()))


def kl_estimate(log_ratio: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """The KL of the acting policy from the new one, mean((r - 1) - log r) with r = ``ratio`` = exp(``log_ratio``)
    (passed in, as the loss has it already): unbiased and never negative (Schulman's k3), the one ``approx_kl`` and
    the KL-adapted rate read."""
    return ((ratio - 1.0) - log_ratio).mean()


def logit_kl(logits: torch.Tensor, start_logits: torch.Tensor) -> torch.Tensor:
    """The KL from a uniform policy to the one its logits become when they move by ``logits - start_logits``, per
    (t, env): logsumexp(d) - log n - mean(d) for the change d over n actions; never negative, ~ half d's variance.

    Why uniform: the KL of a near-deterministic policy is its logits' movement times ~p (1 - p), so it reads ~0 while
    the logits drift; from a uniform policy every action's movement counts alike (``PPOConfig.lr_kl_reading``)."""
    d = logits - start_logits
    return torch.logsumexp(d, dim=-1) - math.log(d.shape[-1]) - d.mean(dim=-1)


def normalize_advantages(advantages: torch.Tensor, std_floor: float = 0.0) -> torch.Tensor:
    """Centred and divided by their std, or by ``std_floor`` when that is larger (see ``PPOConfig.adv_std_floor``)."""
    if advantages.numel() < 2:
        return advantages
    scale = torch.clamp(advantages.std(), min=std_floor)
    return (advantages - advantages.mean()) / (scale + 1e-8)


def ppo_loss(
    logits: torch.Tensor,
    values: torch.Tensor,
    actions: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    old_values: torch.Tensor,
    cfg: PPOConfig,
    action_kind: str = "discrete",
) -> LossOutput:
    """Clipped surrogate + value loss - entropy bonus over every (t, env) of a minibatch.

    ``logits`` is the policy output: logits, or the Gaussian's means and log stds (``action_kind='continuous'``).
    ``advantages`` are used as given: ``PPO.update`` normalises each whole minibatch (``normalize_advantages``)
    before it splits the minibatch between learner ranks."""
    dist = action_distribution(logits, action_kind)
    new_logp = dist.log_prob(actions)
    log_ratio = new_logp - old_logp
    ratio = log_ratio.exp()
    with torch.no_grad():
        approx_kl = kl_estimate(log_ratio, ratio)
        clip_fraction = ((ratio - 1.0).abs() > cfg.clip_coef).float().mean()
        old_approx_kl = (-log_ratio).mean()
    pg1 = -advantages * ratio
    pg2 = -advantages * torch.clamp(ratio, 1.0 - cfg.clip_coef, 1.0 + cfg.clip_coef)
    policy_loss = torch.max(pg1, pg2).mean()
    if cfg.clip_vloss:
        clipped = old_values + torch.clamp(values - old_values, -cfg.clip_coef, cfg.clip_coef)
        value_loss = 0.5 * torch.max((values - returns) ** 2, (clipped - returns) ** 2).mean()
    else:
        value_loss = 0.5 * ((values - returns) ** 2).mean()
    entropy = dist.entropy().mean()
    loss = policy_loss - cfg.ent_coef * entropy + cfg.vf_coef * value_loss
    return LossOutput(loss, policy_loss, value_loss, entropy, approx_kl, clip_fraction, old_approx_kl)


def value_statistics(value_norm: RunningNorm, value_layer: nn.Linear) -> dict[str, float]:
    """The return statistics the value head is standardised with, and the size of its last layer's weights.

    Why: with the output preservation each move of the statistics rescales that layer by old std / new std, so over
    a run it ends at 1 / std times the size the fit gave it: 3-18x where rewards are bounded (std < 1), and with it
    the value fit's pull on the shared core (docs/learning.md, "Why the preservation costs"); these curves show it.
    """
    return {
        "values/return_mean": float(value_norm.mean.detach().mean()),
        "values/return_std": float(value_norm.std().detach().mean()),
        "values/head_weight_norm": float(value_layer.weight.detach().norm()),
    }


class PPO:
    """Owns the optimiser; ``update`` turns one batch of segments into one or more gradient steps."""

    def __init__(
        self,
        model: nn.Module,
        cfg: PPOConfig,
        seed: int = 0,
        *,
        trained: nn.Module | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        """``trained``: what the gradient steps call, the model itself or its DistributedDataParallel wrapper; with
        ``world_size`` ranks, this rank trains on its share (``rank``) of every minibatch's env rows."""
        self.model = model
        self.trained = model if trained is None else trained
        self.rank, self.world_size = rank, world_size
        self.cfg = cfg
        # fused: one kernel over all parameters instead of a dozen small ops per tensor; on the CPU it took an
        # AGaLiTe Adam step from 8 ms to 1.2 ms (a tenth of a learner update). Same update rule as the default.
        fused = next(model.parameters()).device.type in ("cpu", "cuda")  # the devices torch's fused Adam supports
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps, fused=fused)
        self.generator = torch.Generator().manual_seed(seed)
        self.skipped_steps = 0  # gradient steps skipped for a non-finite loss or gradient, over the run

    def set_lr_fraction(self, remaining: float) -> None:
        """Linear annealing: ``remaining`` is the fraction of the step budget still ahead."""
        if self.cfg.anneal_lr:
            for group in self.optimizer.param_groups:
                group["lr"] = self.cfg.lr * max(remaining, 0.0)

    def _adapt_lr(self, kl: float, rise: bool = True) -> None:
        """The step size that keeps the policy's movement per minibatch near ``lr_kl_target``: models differ by
        several times in how far one Adam step at a given rate moves their policy (docs/learning.md). ``rise``:
        whether a KL below half the target may raise it now (``PPOConfig.lr_kl_rise``)."""
        cfg = self.cfg
        assert cfg.lr_kl_target is not None
        self._scale_lr(1 / 1.5 if kl > 2 * cfg.lr_kl_target else 1.5 if rise and kl < cfg.lr_kl_target / 2 else 1.0)

    def _scale_lr(self, factor: float) -> None:
        """The KL-adapted rate times ``factor``, within [lr_min, the ceiling]."""
        for group in self.optimizer.param_groups:
            group["lr"] = min(max(group["lr"] * factor, self.cfg.lr_min), self.cfg.lr_ceiling)

    def _bound_update(
        self, batch: Batch, start_logits: torch.Tensor, start: list[torch.Tensor]
    ) -> tuple[float, float, float]:
        """``PPOConfig.update_kl_limit`` and ``update_kl_max_limit``: the update's KL on the whole batch (before ->
        after), its largest value at any one (t, env), and the fraction of its weight change kept (1: all; halved
        while a limit is exceeded; 0: undone after four halvings).

        The weights move back along the update's own straight line, as a trust-region line search does: the
        direction the gradient steps found is kept, only its length is cut. The optimiser's moments are kept too
        (they summarise gradients that were measured). TRPO's guarantee is stated for the largest per-state KL and
        approximated there by the mean; the largest is the one a flipped rare decision shows in."""
        cfg = self.cfg
        mean_limit = math.inf if cfg.update_kl_limit is None else cfg.update_kl_limit
        max_limit = math.inf if cfg.update_kl_max_limit is None else cfg.update_kl_max_limit
        kind = getattr(self.model, "action_kind", "discrete")
        num_t = start_logits.shape[0]
        before = action_distribution(start_logits, kind)
        params = [p for p in self.model.parameters() if p.requires_grad]
        end = [p.detach().clone() for p in params]

        def exceeded() -> tuple[bool, float, float]:
            with torch.no_grad():
                logits, _, _ = self.model(batch.obs[:num_t], batch.reset[:num_t], batch.initial_state)
                kl = kl_divergence(before, action_distribution(logits, kind))
            # every rank computed them on the whole batch: averaged anyway, so that all take one decision
            mean, largest = distributed.mean_over_ranks(float(kl.mean())), distributed.mean_over_ranks(float(kl.max()))
            return mean > mean_limit or largest > max_limit, mean, largest

        def place(fraction: float) -> None:
            with torch.no_grad():
                for p, a, b in zip(params, start, end, strict=True):
                    p.copy_(torch.lerp(a, b, fraction))

        over, update_kl, update_kl_max = exceeded()
        kept = 1.0
        while over and kept > 1 / 16:
            kept /= 2
            place(kept)
            over, _, _ = exceeded()
        if over:
            place(0.0)
        if kept < 1.0 and cfg.lr_kl_target is not None:
            self._scale_lr(kept)  # the next update starts at the step length this one could keep
        return update_kl, update_kl_max, 0.0 if over else kept

    def update(self, batch: Batch) -> dict[str, float]:
        cfg = self.cfg
        num_t = batch.actions.shape[0]
        obs_norm = getattr(self.model, "obs_norm", None)
        value_norm: RunningNorm | None = getattr(self.model, "value_norm", None)
        # the running statistics are updated before any gradient step: keep them to put back if this batch's
        # numbers are not finite (one inf in the value statistics would make every later value NaN)
        statistics = [p for p in self.model.parameters() if not p.requires_grad] + list(self.model.buffers())
        saved = [p.detach().clone() for p in statistics]
        if obs_norm is not None:  # obs[T] is the next segment's obs[0]: count each observation once
            obs_norm.update(batch.obs[:num_t])
        with torch.no_grad():
            logits, values, _ = self.model(batch.obs, batch.reset, batch.initial_state)
            start_logits = logits[:num_t]
            arrival_kl = policy_kl(start_logits, batch, getattr(self.model, "action_kind", "discrete"))
            advantages, returns = compute_gae(
                batch.rewards,
                values,
                batch.terminated,
                batch.truncated,
                batch.bootstrap_values,
                cfg.gamma,
                cfg.gae_lambda,
            )
        old_values = values[:-1]
        value_stats = None if value_norm is None else (value_norm.mean.detach().clone(), value_norm.std().detach())
        if value_norm is not None:
            value_norm.update(returns)

        def loss_space(v: torch.Tensor) -> torch.Tensor:
            """Values and returns as the value head sees them: standardised when the model normalises values."""
            return v if value_norm is None else (v - value_norm.mean) / value_norm.std()

        return_scale = 1.0 if value_norm is None else float(value_norm.std().mean())
        if value_norm is not None and cfg.preserve_values and cfg.preserve_values_loss_power:
            # the preservation has grown the head by 1 / return_scale since the statistics' start at std 1
            cfg = replace(cfg, vf_coef=cfg.vf_coef * return_scale**cfg.preserve_values_loss_power)
        adv_std_floor = cfg.adv_std_floor * return_scale
        n = batch.num_envs
        mb_count = max(1, min(cfg.minibatches, n))
        poisoned = not bool(torch.isfinite(returns).all()) or not all(bool(torch.isfinite(p).all()) for p in statistics)
        if poisoned:  # nothing of this batch reaches the model: statistics restored, every step skipped
            with torch.no_grad():
                for p, value in zip(statistics, saved, strict=True):
                    p.copy_(value)
        elif value_stats is not None and cfg.preserve_values:
            assert value_norm is not None
            layer = cast(ActorCritic, self.model).value_output_layer()
            preserve_denormalized_outputs(layer, value_norm, *value_stats)
        bound = cfg.bounds_update and not poisoned
        start = [p.detach().clone() for p in self.model.parameters() if p.requires_grad] if bound else []
        sums: dict[str, float] = {}
        steps = 0
        skipped = cfg.epochs * mb_count if poisoned else 0
        stop = False
        reads_logits = cfg.lr_kl_reading == "logits" and getattr(self.model, "action_kind", "discrete") == "discrete"
        low_kl_only = True  # every KL reading of this update below half the target (lr_kl_rise = "update")
        # Advantages are normalised over each whole minibatch before it is split between ranks, and each rank's
        # loss is weighted by its share of the rows: the all-reduced gradient is the single-learner gradient.
        for _ in range(0 if poisoned else cfg.epochs):
            perm = torch.randperm(n, generator=self.generator).to(batch.actions.device)
            for minibatch in torch.tensor_split(perm, mb_count):
                share = torch.tensor_split(torch.arange(len(minibatch), device=perm.device), self.world_size)[self.rank]
                idx = minibatch[share]
                adv = advantages[:, minibatch]
                if cfg.norm_adv:
                    adv = normalize_advantages(adv, adv_std_floor)
                state = {k: v[idx] for k, v in batch.initial_state.items()}
                logits, new_values, _ = self.trained(batch.obs[:num_t, idx], batch.reset[:num_t, idx], state)
                out = ppo_loss(
                    logits,
                    loss_space(new_values),
                    batch.actions[:, idx],
                    batch.logp[:, idx],
                    adv[:, share],
                    loss_space(returns[:, idx]),
                    loss_space(old_values[:, idx]),
                    cfg,
                    getattr(self.model, "action_kind", "discrete"),
                )
                self.optimizer.zero_grad(set_to_none=True)
                (out.loss * (self.world_size * len(idx) / len(minibatch))).backward()
                grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                finite = bool(torch.isfinite(out.loss)) and bool(torch.isfinite(grad_norm))
                if not distributed.all_true(finite):
                    # one step on a NaN/inf gradient would make every weight NaN for good: skip it, count it
                    self.optimizer.zero_grad(set_to_none=True)
                    skipped += 1
                    continue
                self.optimizer.step()
                for key, value in (
                    ("losses/loss", out.loss),
                    ("losses/policy_loss", out.policy_loss),
                    ("losses/value_loss", out.value_loss),
                    ("losses/entropy", out.entropy),
                    ("losses/approx_kl", out.approx_kl),
                    ("losses/old_approx_kl", out.old_approx_kl),
                    ("losses/clipfrac", out.clip_fraction),
                    ("losses/grad_norm", grad_norm),
                ):
                    sums[key] = sums.get(key, 0.0) + float(value.detach())
                steps += 1
                kl = float(out.approx_kl)
                rate_kl = kl  # what the KL-adapted rate reads (PPOConfig.lr_kl_reading)
                if reads_logits:
                    with torch.no_grad():
                        moved = float(logit_kl(logits.detach(), start_logits[:, idx]).mean())
                    sums["losses/logit_kl"] = sums.get("losses/logit_kl", 0.0) + moved
                    rate_kl = max(kl, moved)
                if cfg.target_kl is not None or cfg.lr_kl_target is not None:
                    # every rank takes the same decisions, on the whole minibatch's KL
                    kl = distributed.mean_over_ranks(kl, weight=len(idx))
                if cfg.lr_kl_target is not None:
                    rate_kl = distributed.mean_over_ranks(rate_kl, weight=len(idx)) if reads_logits else kl
                    self._adapt_lr(rate_kl, rise=cfg.lr_kl_rise == "minibatch")
                    low_kl_only = low_kl_only and rate_kl < cfg.lr_kl_target / 2
                if cfg.target_kl is not None and kl > cfg.target_kl:
                    stop = True
                    break
            if stop:
                break
        update_kl, update_kl_max, kept = float("nan"), float("nan"), 1.0
        if bound and steps:
            update_kl, update_kl_max, kept = self._bound_update(batch, start_logits, start)
        if cfg.lr_kl_target is not None and cfg.lr_kl_rise == "update" and steps and low_kl_only and kept == 1.0:
            self._scale_lr(1.5)  # the update's one rise: every reading was below half the target
        if skipped:
            if not self.skipped_steps:
                log.warning(
                    "skipped %d gradient step(s) with a non-finite return, loss or gradient (weights left unchanged); "
                    "further skips are counted in losses/skipped_steps",
                    skipped,
                )
            self.skipped_steps += skipped
        stats = {k: v / steps for k, v in sums.items()} if steps else {}
        var = float(returns.var())
        stats["losses/explained_variance"] = (
            float("nan") if var == 0 else 1.0 - float((returns - old_values).var()) / var
        )
        stats["losses/arrival_kl"] = arrival_kl
        if cfg.bounds_update:
            stats["losses/update_kl"] = update_kl
            stats["losses/update_kl_max"] = update_kl_max
            stats["losses/update_kept"] = kept
        stats["losses/gradient_steps"] = float(steps)
        stats["losses/skipped_steps"] = float(skipped)
        stats["charts/learning_rate"] = float(self.optimizer.param_groups[0]["lr"])
        if value_norm is not None:
            stats.update(value_statistics(value_norm, cast(ActorCritic, self.model).value_output_layer()))
        return stats

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
