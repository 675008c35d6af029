"""PPO pieces of the learner against values worked out by hand (GAE, the loss) and against a manual gradient step."""

from __future__ import annotations

import copy
import dataclasses
import io
import math

import numpy as np
import pytest
import torch
from gymnasium import spaces

from envs import env_spaces
from learner.config import PPOConfig
from learner.ppo import PPO, Batch, batch_from_segments, compute_gae, logit_kl, normalize_advantages, ppo_loss
from models.registry import build_actor_critic, small_config
from protocol import Segment

GAMMA, LAM = 0.5, 0.5  # round numbers, so every value below can be checked with pencil and paper
REWARDS = [1.0, 0.0, 2.0]
VALUES = [0.5, 1.0, -1.0, 2.0]  # T+1 values: VALUES[3] bootstraps the segment's tail


def _gae(rewards, values, terminated=None, truncated=None, bootstrap=None):
    t = len(rewards)

    def col(x, dtype=torch.float32):
        return torch.tensor(x, dtype=dtype).reshape(len(x), -1)

    term = col(terminated or [False] * t, torch.bool)
    trunc = col(truncated or [False] * t, torch.bool)
    boot = col(bootstrap or [0.0] * t)
    adv, ret = compute_gae(col(rewards), col(values), term, trunc, boot, GAMMA, LAM)
    return adv[:, 0].tolist(), ret[:, 0].tolist()


def test_gae_without_episode_end():
    # delta_t = r_t + g V_{t+1} - V_t:  d0 = 1 + .5*1 - .5 = 1,  d1 = 0 + .5*(-1) - 1 = -1.5,  d2 = 2 + .5*2 + 1 = 4
    # A2 = 4,  A1 = -1.5 + .25*4 = -0.5,  A0 = 1 + .25*(-0.5) = 0.875;  returns = A + V[:-1]
    adv, ret = _gae(REWARDS, VALUES)
    assert adv == pytest.approx([0.875, -0.5, 4.0])
    assert ret == pytest.approx([1.375, 0.5, 3.0])


def test_gae_termination_inside_segment_does_not_bootstrap_across_it():
    # step 1 terminates: d1 = 0 + 0 - 1 = -1 (no V of the next episode's first obs) and A1 does not see A2
    # A2 = 4 (the new episode, bootstrapping from VALUES[3]),  A1 = -1,  A0 = 1 + .25*(-1) = 0.75
    adv, ret = _gae(REWARDS, VALUES, terminated=[False, True, False], bootstrap=[0.0, 123.0, 0.0])
    assert adv == pytest.approx([0.75, -1.0, 4.0])
    assert ret == pytest.approx([1.25, 0.0, 3.0])


def test_gae_termination_on_last_step_ignores_tail_value():
    # d2 = 2 + 0 - (-1) = 3,  A1 = -1.5 + .25*3 = -0.75,  A0 = 1 + .25*(-0.75) = 0.8125
    adv, _ = _gae(REWARDS, VALUES, terminated=[False, False, True])
    assert adv == pytest.approx([0.8125, -0.75, 3.0])


def test_gae_truncation_bootstraps_from_final_observation_value():
    # step 1 is cut by the time limit; V(final obs) = 3 comes from bootstrap_values, not VALUES[2] (next episode):
    # d1 = 0 + .5*3 - 1 = 0.5,  A1 = 0.5 (no carry from the next episode),  A0 = 1 + .25*.5 = 1.125,  A2 = 4
    adv, ret = _gae(REWARDS, VALUES, truncated=[False, True, False], bootstrap=[0.0, 3.0, 0.0])
    assert adv == pytest.approx([1.125, 0.5, 4.0])
    assert ret == pytest.approx([1.625, 1.5, 3.0])


def test_gae_several_envs_are_independent_columns():
    cases = [
        dict(terminated=[False] * 3, truncated=[False] * 3, bootstrap=[0.0] * 3),
        dict(terminated=[False, True, False], truncated=[False] * 3, bootstrap=[0.0] * 3),
        dict(terminated=[False] * 3, truncated=[False, True, False], bootstrap=[0.0, 3.0, 0.0]),
    ]
    rewards = torch.tensor([REWARDS] * 3).T.contiguous()
    values = torch.tensor([VALUES, [v * 2 for v in VALUES], VALUES]).T.contiguous()
    term = torch.tensor([c["terminated"] for c in cases]).T.contiguous()
    trunc = torch.tensor([c["truncated"] for c in cases]).T.contiguous()
    boot = torch.tensor([c["bootstrap"] for c in cases]).T.contiguous()
    adv, ret = compute_gae(rewards, values, term, trunc, boot, GAMMA, LAM)
    assert adv.shape == ret.shape == (3, 3)
    assert adv[:, 0].tolist() == pytest.approx([0.875, -0.5, 4.0])
    assert adv[:, 2].tolist() == pytest.approx([1.125, 0.5, 4.0])
    # env 1 has doubled values: d0 = 1 + .5*2 - 1 = 1, d1 = -2, A1 = -2, A2 = 2 + .5*4 + 2 = 6, A0 = 1 - .5 = 0.5
    assert adv[:, 1].tolist() == pytest.approx([0.5, -2.0, 6.0])


# ---------------------------------------------------------------------------------------------------------- loss
def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _loss_case():
    """T=2, N=2, 3 actions; old log-probs chosen so the ratios are 1.1, 1.5, 0.5 and 0.9."""
    logits = np.array([[[0.2, -0.1, 0.5], [1.0, 0.0, -1.0]], [[0.3, 0.3, -0.2], [-0.5, 0.4, 0.1]]], dtype=np.float64)
    actions = np.array([[2, 0], [1, 2]])
    new_logp = np.take_along_axis(_log_softmax(logits), actions[..., None], axis=-1)[..., 0]
    ratios = np.array([[1.1, 1.5], [0.5, 0.9]])
    old_logp = new_logp - np.log(ratios)
    advantages = np.array([[1.0, 2.0], [-1.5, 0.5]])
    values = np.array([[0.5, -0.2], [1.0, 0.3]])
    returns = np.array([[1.0, 0.0], [0.2, 0.35]])
    old_values = np.array([[0.1, -0.1], [1.5, 0.31]])
    return logits, actions, old_logp, advantages, values, returns, old_values, ratios


def _torch_loss(cfg: PPOConfig):
    """The loss as ``PPO.update`` computes it: advantages normalised first when ``cfg.norm_adv``."""
    logits, actions, old_logp, adv, values, returns, old_values, _ = _loss_case()

    def t(a):
        return torch.tensor(a, dtype=torch.float64)

    advantages = normalize_advantages(t(adv)) if cfg.norm_adv else t(adv)
    return ppo_loss(
        t(logits), t(values), torch.tensor(actions), t(old_logp), advantages, t(returns), t(old_values), cfg
    )


@pytest.mark.parametrize("norm_adv", [False, True])
@pytest.mark.parametrize("clip_vloss", [False, True])
def test_ppo_loss_matches_hand_computation(norm_adv: bool, clip_vloss: bool):
    cfg = PPOConfig(clip_coef=0.2, norm_adv=norm_adv, clip_vloss=clip_vloss, ent_coef=0.01, vf_coef=0.5)
    logits, _actions, _old_logp, adv, values, returns, old_values, ratios = _loss_case()
    if norm_adv:  # torch's std is the unbiased one (ddof=1), as in the reference implementations
        adv = (adv - adv.mean()) / (adv.std(ddof=1) + 1e-8)
    # clipped surrogate, element by element: ratio 1.1 is inside [0.8, 1.2]; 1.5 (A>0) is clipped to 1.2;
    # 0.5 with A<0 is clipped to 0.8 (the pessimistic choice); 0.9 is inside
    clipped_ratio = np.clip(ratios, 0.8, 1.2)
    expected_pg = np.maximum(-adv * ratios, -adv * clipped_ratio).mean()
    if not norm_adv:
        by_hand = np.array([[-1.0 * 1.1, -2.0 * 1.2], [1.5 * 0.8, -0.5 * 0.9]]).mean()
        assert expected_pg == pytest.approx(by_hand)
    if clip_vloss:
        v_clipped = old_values + np.clip(values - old_values, -0.2, 0.2)
        expected_v = 0.5 * np.maximum((values - returns) ** 2, (v_clipped - returns) ** 2).mean()
    else:
        expected_v = 0.5 * ((values - returns) ** 2).mean()
    logp_all = _log_softmax(logits)
    expected_ent = (-(np.exp(logp_all) * logp_all).sum(-1)).mean()
    expected = expected_pg - 0.01 * expected_ent + 0.5 * expected_v

    out = _torch_loss(cfg)
    assert float(out.policy_loss) == pytest.approx(expected_pg, rel=1e-9)
    assert float(out.value_loss) == pytest.approx(expected_v, rel=1e-9)
    assert float(out.entropy) == pytest.approx(expected_ent, rel=1e-9)
    assert float(out.loss) == pytest.approx(expected, rel=1e-9)
    # two of four ratios (1.5 and 0.5) lie outside the clip range
    assert float(out.clip_fraction) == pytest.approx(0.5)
    log_r = np.log(ratios)
    assert float(out.approx_kl) == pytest.approx(((ratios - 1) - log_r).mean(), rel=1e-9)


def test_advantage_normalisation_does_not_blow_up_noise_past_the_floor():
    """Once a task is solved the advantages are value-error noise: divided by their own std they would weigh as much
    as real advantages. With a floor above their std they are divided by the floor instead."""
    logits, actions, old_logp, adv, values, returns, old_values, ratios = _loss_case()
    noise = adv * 1e-4  # std ~1.5e-4; the real advantages' std is ~1.5
    cfg = PPOConfig(clip_coef=0.2, norm_adv=True, clip_vloss=False, ent_coef=0.0, vf_coef=0.0)

    def t(a):
        return torch.tensor(a, dtype=torch.float64)

    def policy_loss(advantages: np.ndarray, floor: float) -> float:
        normalized = normalize_advantages(t(advantages), floor)
        args = (t(logits), t(values), torch.tensor(actions), t(old_logp), normalized, t(returns), t(old_values))
        return float(ppo_loss(*args, cfg).policy_loss)

    def by_hand(advantages: np.ndarray, scale: float) -> float:
        a = (advantages - advantages.mean()) / (scale + 1e-8)
        return float(np.maximum(-a * ratios, -a * np.clip(ratios, 0.8, 1.2)).mean())

    assert policy_loss(noise, 0.0) == pytest.approx(by_hand(noise, noise.std(ddof=1)), rel=1e-9)  # full weight
    assert policy_loss(noise, 0.5) == pytest.approx(by_hand(noise, 0.5), rel=1e-9)
    assert abs(policy_loss(noise, 0.5)) < 1e-3 * abs(policy_loss(noise, 0.0))
    # advantages above the floor are normalised by their own std, as without it
    assert policy_loss(adv, 0.5) == pytest.approx(by_hand(adv, adv.std(ddof=1)), rel=1e-9)


def test_value_clipping_changes_the_value_loss_in_this_case():
    # A guard for the case above: it must actually exercise the clip (values move more than 0.2 from old_values)
    a = _torch_loss(PPOConfig(clip_vloss=False, norm_adv=False))
    b = _torch_loss(PPOConfig(clip_vloss=True, norm_adv=False))
    assert float(b.value_loss) > float(a.value_loss)
    # by hand: env (0,1): |v - old| = 0.1, unclipped; (1,0): v=1.0, old=1.5 -> clipped 1.3, (1.3-0.2)^2 > (1-0.2)^2
    # (0,0): v=0.5, old=0.1 -> clipped 0.3, (0.3-1)^2 = .49 > (0.5-1)^2 = .25;  (1,1): unclipped (0.3 vs 0.31)
    expected = 0.5 * np.mean([0.49, 0.04, 1.21, 0.0025])
    assert float(b.value_loss) == pytest.approx(expected)


def test_ppo_loss_gradient_is_zero_for_clipped_samples():
    """The clipped surrogate passes no gradient through a sample whose ratio is clipped on the pessimistic side."""
    logits = torch.zeros(1, 2, 2, dtype=torch.float64, requires_grad=True)
    actions = torch.tensor([[0, 0]])
    new_logp = math.log(0.5)
    old_logp = torch.tensor([[new_logp - math.log(1.5), new_logp - math.log(1.1)]], dtype=torch.float64)
    adv = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    zeros = torch.zeros(1, 2, dtype=torch.float64)
    out = ppo_loss(
        logits,
        zeros,
        actions,
        old_logp,
        adv,
        zeros,
        zeros,
        PPOConfig(norm_adv=False, ent_coef=0.0, vf_coef=0.0, clip_coef=0.2),
    )
    (grad,) = torch.autograd.grad(out.loss, logits)
    assert torch.all(grad[0, 0] == 0)  # ratio 1.5 > 1.2 with A > 0: clipped, no gradient
    assert torch.any(grad[0, 1] != 0)  # ratio 1.1: inside, gradient flows


# ------------------------------------------------------------------------------------------ batches and updates
_obs_space, _act_space = env_spaces("agalite/TMaze-v0", corridor_length=4)
assert isinstance(_obs_space, spaces.Box) and isinstance(_act_space, spaces.Discrete)
OBS_SPACE, ACT_SPACE = _obs_space, _act_space


def _model(seed: int = 0, kind: str = "agalite", normalize: bool = False):
    """Normalisation off by default: the hand-computed updates below check PPO's arithmetic alone."""
    torch.manual_seed(seed)
    cfg = dataclasses.replace(small_config(kind), normalize_obs=normalize, normalize_value=normalize)
    return build_actor_critic(cfg, OBS_SPACE, ACT_SPACE)


def _segment(model, t: int, b: int, seed: int, policy_version: int = 0) -> Segment:
    rng = np.random.default_rng(seed)
    obs_dim = OBS_SPACE.shape[0]
    terminated = np.zeros((t, b), dtype=bool)
    truncated = np.zeros((t, b), dtype=bool)
    terminated[t // 2, 0] = True
    if b > 1:
        truncated[t // 3, 1] = True
    reset = np.zeros((t + 1, b), dtype=bool)
    reset[0] = True
    reset[1:] = terminated | truncated
    bootstrap = np.where(truncated, rng.normal(size=(t, b)), 0.0).astype(np.float32)
    state = {k: v.detach().numpy() for k, v in model.initial_state(b).items()}
    return Segment(
        actor_id=f"a{seed}",
        run_id="r",
        seq=0,
        policy_version=policy_version,
        obs=rng.integers(0, 2, size=(t + 1, b, obs_dim)).astype(np.float32),
        actions=rng.integers(0, ACT_SPACE.n, size=(t, b)).astype(np.int64),
        logp=np.full((t, b), math.log(1.0 / ACT_SPACE.n), dtype=np.float32),
        rewards=rng.normal(size=(t, b)).astype(np.float32),
        terminated=terminated,
        truncated=truncated,
        reset=reset,
        bootstrap_values=bootstrap,
        initial_state=state,
        episodes=[],
    )


def test_batch_from_segments_stacks_along_the_env_axis():
    model = _model()
    a, b = _segment(model, 5, 2, seed=1), _segment(model, 5, 3, seed=2)
    batch = batch_from_segments([a, b], torch.device("cpu"))
    assert batch.num_envs == 5 and batch.num_steps == 25
    assert batch.obs.shape == (6, 5, OBS_SPACE.shape[0])
    assert batch.actions.dtype == torch.int64 and batch.actions.shape == (5, 5)
    assert batch.terminated.dtype == torch.bool and batch.reset.shape == (6, 5)
    for name in ("obs", "actions", "logp", "rewards", "terminated", "truncated", "reset", "bootstrap_values"):
        got = getattr(batch, name).numpy()
        np.testing.assert_array_equal(got[:, :2], getattr(a, name), err_msg=name)
        np.testing.assert_array_equal(got[:, 2:], getattr(b, name), err_msg=name)
    assert set(batch.initial_state) == set(a.initial_state)
    for k, v in batch.initial_state.items():
        assert v.shape[0] == 5
        np.testing.assert_array_equal(v[:2].numpy(), a.initial_state[k])
        np.testing.assert_array_equal(v[2:].numpy(), b.initial_state[k])


def _batch(model, seed: int = 3) -> Batch:
    return batch_from_segments(
        [_segment(model, 8, 2, seed=seed), _segment(model, 8, 2, seed=seed + 1)], torch.device("cpu")
    )


def test_arrival_kl_is_the_gap_between_the_acting_and_the_learning_policy():
    """``losses/arrival_kl``: zero for a batch acted by the learner's own weights; after one update, the same batch
    arrives from an older policy and the metric is that KL, computed by hand (before any step of the update)."""
    model = _model()
    batch = _batch(model)
    t = batch.actions.shape[0]

    def logp_now() -> torch.Tensor:
        with torch.no_grad():
            logits, _, _ = model(batch.obs, batch.reset, batch.initial_state)
        return torch.distributions.Categorical(logits=logits[:t]).log_prob(batch.actions)

    own = dataclasses.replace(batch, logp=logp_now())
    ppo = PPO(model, PPOConfig(epochs=1, minibatches=1, lr=1e-2, lr_kl_target=None), seed=0)
    assert abs(ppo.update(own)["losses/arrival_kl"]) < 1e-6
    log_ratio = logp_now() - own.logp
    expected = float(((log_ratio.exp() - 1.0) - log_ratio).mean())
    assert expected > 1e-5  # the update moved the policy (a metric stuck at zero fails here)
    assert ppo.update(own)["losses/arrival_kl"] == pytest.approx(expected, rel=1e-4)


def test_a2c_update_is_exactly_one_gradient_step():
    """epochs=1, minibatches=1 is one Adam step on the whole batch's loss: the same loss, the same gradient, and
    the weights moved by Adam's first step of that gradient.

    Not compared: the weights after the step, each against a hand-made Adam step. Adam's first step is
    -lr * g / (|g| + eps), whose slope in g is up to lr / eps (1e3 here): a gradient of ~1e-9 (a LayerNorm bias)
    rounded differently -- PPO takes the envs in a shuffled order, so every sum over envs is added in another
    order, and other CPUs' kernels add in other orders too -- moves that weight by ~1e-6 and may flip its sign.
    """
    cfg = PPOConfig(epochs=1, minibatches=1, lr=1e-2, max_grad_norm=0.5, clip_vloss=False)
    model = _model()
    reference = copy.deepcopy(model)
    before = [p.detach().clone() for p in model.parameters()]
    batch = _batch(model)
    ppo = PPO(model, cfg, seed=0)
    stats = ppo.update(batch)
    assert stats["losses/gradient_steps"] == 1.0

    # The same loss by hand: values and GAE from the weights before the step, one loss over the whole batch (envs
    # in their original order), gradient clipping.
    with torch.no_grad():
        _, values, _ = reference(batch.obs, batch.reset, batch.initial_state)
        adv, ret = compute_gae(
            batch.rewards, values, batch.terminated, batch.truncated, batch.bootstrap_values, cfg.gamma, cfg.gae_lambda
        )
    t = batch.actions.shape[0]
    logits, new_values, _ = reference(batch.obs[:t], batch.reset[:t], batch.initial_state)
    # advantages normalised as the update does (no value normalisation here: the floor is in raw return units)
    normalized = normalize_advantages(adv, cfg.adv_std_floor)
    out = ppo_loss(logits, new_values, batch.actions, batch.logp, normalized, ret, values[:-1], cfg)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(reference.parameters(), cfg.max_grad_norm)

    # Same loss: a mean of T*N = 32 float32 terms of size ~1, added in another order; rounding is below
    # 32 * 2^-24 relative, so rel=1e-4 leaves a wide margin.
    assert stats["losses/loss"] == pytest.approx(float(out.loss.detach()), rel=1e-4, abs=1e-6)

    eps32 = torch.finfo(torch.float32).eps
    beta1 = ppo.optimizer.param_groups[0]["betas"][0]
    ref_grads = [q.grad.double() for q in reference.parameters()]
    scale = max(g.abs().max().item() for g in ref_grads)
    # Same gradient, up to float32 summation order. Each gradient entry is a sum over the batch (32 rows) of
    # products that themselves sum over widths <= 64, ~2e3 terms in all: worst-case rounding is ~2e3 * 2^-24
    # (1.2e-4) of the largest magnitudes involved, which the largest gradient entry bounds here; 1e-3 of it holds
    # on any kernel order, while a wrong loss (a term missing, another batch, no clipping) is off by far more.
    grad_bound = 1e-3 * scale
    for (name, p), p0, g_ref in zip(model.named_parameters(), before, ref_grads, strict=True):
        # the gradient PPO stepped with, from Adam's first moment after one step: m = (1 - beta1) * g
        g = ppo.optimizer.state[p]["exp_avg"].double() / (1 - beta1)
        gap = (g - g_ref).abs().max().item()
        assert gap <= grad_bound, f"{name}: gradient differs by {gap:.3g} (bound {grad_bound:.3g})"
        # One Adam step of that gradient: m_hat = g, v_hat = g^2, so the step is -lr * g / (|g| + eps). Bound:
        # Adam's ~8 float32 roundings (moments, sqrt, bias corrections, eps, division, step size) of a step of at
        # most lr, and the rounding of the stored weight (|p| + lr): 16 * eps32 * (|p| + lr) covers both twice.
        step = p.detach().double() - p0.double()
        adam = -cfg.lr * g / (g.abs() + cfg.adam_eps)
        room = 16 * eps32 * (p0.double().abs() + cfg.lr)
        assert ((step - adam).abs() <= room).all(), f"{name}: not one Adam step of PPO's gradient"
        # In the same direction as the hand-made gradient wherever that is clearly above rounding.
        clear = g_ref.abs() > 10 * grad_bound
        assert torch.equal(torch.sign(step[clear]), -torch.sign(g_ref[clear])), f"{name}: step against the gradient"
    # and the step did move the weights
    assert any(not torch.equal(p, p0) for p, p0 in zip(model.parameters(), before, strict=True))


def test_update_counts_epochs_times_minibatches_and_stops_early_on_target_kl():
    model = _model()
    batch = _batch(model)
    stats = PPO(model, PPOConfig(epochs=3, minibatches=2), seed=0).update(batch)
    assert stats["losses/gradient_steps"] == 6.0
    # more minibatches than env rows: one row per minibatch
    stats = PPO(_model(), PPOConfig(epochs=1, minibatches=16), seed=0).update(_batch(_model()))
    assert stats["losses/gradient_steps"] == 4.0
    # a negative target KL is exceeded after the first step
    stats = PPO(_model(), PPOConfig(epochs=3, minibatches=2, target_kl=-1.0), seed=0).update(_batch(_model()))
    assert stats["losses/gradient_steps"] == 1.0
    for key in ("losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/explained_variance"):
        assert key in stats


def test_ppo_state_dict_round_trip_continues_identically():
    cfg = PPOConfig(epochs=2, minibatches=2, lr=5e-3)
    model = _model()
    ppo = PPO(model, cfg, seed=7)
    ppo.update(_batch(model, seed=10))

    # save the way a checkpoint does (torch.save of model + PPO state), load into fresh objects
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "ppo": ppo.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=False)
    model2 = _model(seed=99)
    model2.load_state_dict(saved["model"])
    ppo2 = PPO(model2, cfg, seed=12345)  # a different seed: the generator state must come from the checkpoint
    ppo2.load_state_dict(saved["ppo"])
    s1 = ppo2.optimizer.state_dict()["state"]
    s0 = ppo.optimizer.state_dict()["state"]
    assert s1.keys() == s0.keys() and len(s0) > 0
    for k in s0:
        assert float(s1[k]["step"]) == float(s0[k]["step"]) == 4.0
        torch.testing.assert_close(s1[k]["exp_avg"], s0[k]["exp_avg"])
        torch.testing.assert_close(s1[k]["exp_avg_sq"], s0[k]["exp_avg_sq"])

    batch = _batch(model, seed=20)
    st1 = ppo.update(batch)
    st2 = ppo2.update(batch)
    assert st1["losses/loss"] == st2["losses/loss"]
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, q)

    # without the optimiser state the same step gives different weights (so the check above means something)
    model3 = _model(seed=99)
    model3.load_state_dict(saved["model"])
    PPO(model3, cfg, seed=7).update(_batch(model3, seed=20))
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), model3.parameters(), strict=True))


def test_lr_annealing():
    model = _model()
    ppo = PPO(model, PPOConfig(lr=1e-3, anneal_lr=True))
    ppo.set_lr_fraction(0.25)
    assert ppo.optimizer.param_groups[0]["lr"] == pytest.approx(2.5e-4)
    ppo.set_lr_fraction(-0.5)
    assert ppo.optimizer.param_groups[0]["lr"] == 0.0
    fixed = PPO(model, PPOConfig(lr=1e-3, anneal_lr=False))
    fixed.set_lr_fraction(0.25)
    assert fixed.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_kl_adaptive_lr_follows_the_policy_movement_within_its_bounds():
    # a target far above any KL: every gradient step raises the rate by 1.5, up to lr_max
    cfg = PPOConfig(epochs=3, minibatches=2, lr=1e-4, lr_kl_target=1e3, lr_min=1e-5, lr_max=3e-3)
    model = _model()
    ppo = PPO(model, cfg, seed=0)
    stats = ppo.update(_batch(model))
    assert stats["losses/gradient_steps"] == 6.0
    assert stats["charts/learning_rate"] == pytest.approx(1e-4 * 1.5**6)
    ppo.update(_batch(model, seed=3))
    ppo.update(_batch(model, seed=4))
    assert ppo.optimizer.param_groups[0]["lr"] == pytest.approx(3e-3)
    # the adapted rate is the optimiser's, so a checkpoint carries it
    again = PPO(_model(), cfg, seed=0)
    again.load_state_dict(ppo.state_dict())
    assert again.optimizer.param_groups[0]["lr"] == pytest.approx(3e-3)
    # a target below any KL a step makes: the rate falls by 1.5 per step, down to lr_min
    low = PPO(_model(), PPOConfig(epochs=3, minibatches=2, lr=1e-3, lr_kl_target=1e-12, lr_min=2e-4), seed=0)
    stats = low.update(_batch(_model()))
    assert stats["losses/approx_kl"] > 2e-12
    assert stats["charts/learning_rate"] == pytest.approx(2e-4)
    # without lr_max the rate never rises above the one given: lowered, then restored, never beyond
    capped = PPO(_model(), PPOConfig(epochs=3, minibatches=2, lr=1e-3, lr_kl_target=1e3), seed=0)
    for group in capped.optimizer.param_groups:
        group["lr"] = 1e-4  # as if lowered by earlier updates
    assert capped.update(_batch(_model()))["charts/learning_rate"] == pytest.approx(1e-3)


def test_kl_adaptive_lr_rises_at_most_once_per_update_with_lr_kl_rise_update():
    # six low readings: one rise (x1.5) at the end of the update, not six
    cfg = PPOConfig(epochs=3, minibatches=2, lr=1e-4, lr_kl_target=1e3, lr_max=3e-3, lr_kl_rise="update")
    model = _model()
    ppo = PPO(model, cfg, seed=0)
    stats = ppo.update(_batch(model))
    assert stats["losses/gradient_steps"] == 6.0
    assert stats["charts/learning_rate"] == pytest.approx(1e-4 * 1.5)
    assert ppo.update(_batch(model, seed=4))["charts/learning_rate"] == pytest.approx(1e-4 * 1.5**2)
    # it still falls after every minibatch above twice the target, and an update that read one does not raise it
    low = PPOConfig(epochs=3, minibatches=2, lr=1e-3, lr_kl_target=1e-12, lr_min=1e-5, lr_kl_rise="update")
    stats = PPO(_model(), low, seed=0).update(_batch(_model()))
    assert stats["losses/approx_kl"] > 2e-12
    assert stats["charts/learning_rate"] == pytest.approx(1e-3 / 1.5**6)


def test_runs_saved_before_lr_kl_rise_read_as_the_per_minibatch_rise():
    from learner.config import ppo_from_saved

    assert ppo_from_saved({"lr": 1e-3})["lr_kl_rise"] == "minibatch"
    assert PPOConfig().lr_kl_rise == "minibatch"


def test_logit_kl_is_the_kl_a_uniform_policy_feels_from_the_change():
    start = torch.randn(5, 3, 4)
    moved = start + torch.randn(5, 3, 4)
    uniform = torch.distributions.Categorical(logits=torch.zeros(5, 3, 4))
    expected = torch.distributions.kl_divergence(uniform, torch.distributions.Categorical(logits=moved - start))
    assert torch.allclose(logit_kl(moved, start), expected, atol=1e-6)
    # a change shared by every action moves no policy; and the reading ignores where the logits started
    assert torch.allclose(logit_kl(start + 7.0, start), torch.zeros(5, 3), atol=1e-6)
    assert torch.allclose(logit_kl(moved + 30 * start, start + 30 * start), logit_kl(moved, start), atol=1e-4)


def _saturated_batch(model) -> Batch:
    """A batch acted by ``model`` after its policy was made near-deterministic (action 0 ahead by a logit gap of ~40)
    and its logits sensitive to the shared core, which the value loss moves (the policy's own gradient vanishes)."""
    layer = model.policy[-1]
    with torch.no_grad():
        layer.weight.mul_(300.0)
        layer.bias.zero_()
        layer.bias[0] = 40.0
    batch = _batch(model)
    t = batch.actions.shape[0]
    with torch.no_grad():
        logits, _, _ = model(batch.obs, batch.reset, batch.initial_state)
    dist = torch.distributions.Categorical(logits=logits[:t])
    actions = torch.zeros_like(batch.actions)
    return dataclasses.replace(batch, actions=actions, logp=dist.log_prob(actions))


def test_lr_kl_reading_logits_sees_a_saturated_policy_move():
    """``ppo.lr_kl_reading``: on a near-deterministic policy the policy's own KL reads ~0 whatever the step, so the
    adapted rate climbs to its ceiling; read through the logits' movement the same steps hold it back."""
    rates = {}
    for reading in ("policy", "logits"):
        model = _model()
        batch = _saturated_batch(model)
        cfg = PPOConfig(epochs=3, minibatches=2, lr=1e-3, lr_max=1e-2, lr_kl_target=1e-4, lr_kl_reading=reading)
        stats = PPO(model, cfg, seed=0).update(batch)
        assert stats["losses/gradient_steps"] == 6.0
        assert stats["losses/approx_kl"] < 1e-8  # the policy's own reading: nothing moved
        rates[reading] = stats["charts/learning_rate"]
        if reading == "logits":
            assert stats["losses/logit_kl"] > 2 * 1e-4  # the logits did move, by more than twice the target
        else:
            assert "losses/logit_kl" not in stats
    assert rates["policy"] == pytest.approx(1e-2)  # risen after every step up to lr_max
    assert rates["logits"] < 1e-3  # lowered


def test_lr_kl_reading_defaults_to_the_policy_and_saved_runs_read_so():
    from learner.config import ppo_from_saved

    assert PPOConfig().lr_kl_reading == "policy"
    assert ppo_from_saved({"lr": 1e-3})["lr_kl_reading"] == "policy"


def _batch_kl(before, after, batch: Batch, reduce=torch.mean) -> float:
    """The exact KL from ``before``'s policy to ``after``'s over every (t, env) of the batch, averaged (``reduce``)."""
    t = batch.actions.shape[0]
    with torch.no_grad():
        p, _, _ = before(batch.obs[:t], batch.reset[:t], batch.initial_state)
        q, _, _ = after(batch.obs[:t], batch.reset[:t], batch.initial_state)
    categorical = torch.distributions.Categorical
    return float(reduce(torch.distributions.kl_divergence(categorical(logits=p), categorical(logits=q))))


def test_update_kl_limit_shrinks_the_update_along_its_own_line():
    """``ppo.update_kl_limit``: an update within the limit is untouched; one beyond it keeps the largest halving of
    its weight change whose KL is within (the same gradient steps, then moved back); one that no halving brings
    within is undone, and the KL-adapted rate is cut by the fraction kept."""
    base = PPOConfig(epochs=2, minibatches=2, lr=3e-2, lr_kl_target=None)
    start = _model()
    batch = _batch(start)
    free = copy.deepcopy(start)
    PPO(free, base, seed=0).update(batch)
    full_kl = _batch_kl(start, free, batch)
    assert full_kl > 1e-3  # the unbounded update moved the policy: the limits below bite

    def bounded(limit: float, **extra) -> tuple[torch.nn.Module, dict[str, float]]:
        model = copy.deepcopy(start)
        ppo = PPO(model, dataclasses.replace(base, update_kl_limit=limit, **extra), seed=0)
        return model, ppo.update(batch)

    model, stats = bounded(full_kl * 2)
    assert stats["losses/update_kept"] == 1.0 and stats["losses/update_kl"] == pytest.approx(full_kl, rel=1e-4)
    largest = _batch_kl(start, free, batch, reduce=torch.max)
    assert stats["losses/update_kl_max"] == pytest.approx(largest, rel=1e-4) and largest > 2 * full_kl
    for p, q in zip(model.parameters(), free.parameters(), strict=True):
        torch.testing.assert_close(p, q)

    model, stats = bounded(full_kl / 3)
    kept = stats["losses/update_kept"]
    assert kept in (0.5, 0.25, 0.125, 0.0625)
    assert stats["losses/update_kl"] == pytest.approx(full_kl, rel=1e-4)  # read before the shrink
    for p, a, b in zip(model.parameters(), start.parameters(), free.parameters(), strict=True):
        torch.testing.assert_close(p, torch.lerp(a, b, kept))
    assert _batch_kl(start, model, batch) <= full_kl / 3
    longer = copy.deepcopy(start)  # the halving before it was still beyond the limit
    with torch.no_grad():
        for p, a, b in zip(longer.parameters(), start.parameters(), free.parameters(), strict=True):
            p.copy_(torch.lerp(a, b, 2 * kept))
    assert _batch_kl(start, longer, batch) > full_kl / 3

    # the bound on the largest per-step KL, alone: the same line search, judged on the max
    model = copy.deepcopy(start)
    cfg = dataclasses.replace(base, update_kl_max_limit=largest / 3)
    stats = PPO(model, cfg, seed=0).update(batch)
    kept = stats["losses/update_kept"]
    assert kept in (0.5, 0.25, 0.125, 0.0625) and stats["losses/update_kl_max"] == pytest.approx(largest, rel=1e-4)
    for p, a, b in zip(model.parameters(), start.parameters(), free.parameters(), strict=True):
        torch.testing.assert_close(p, torch.lerp(a, b, kept))
    assert _batch_kl(start, model, batch, reduce=torch.max) <= largest / 3

    model, stats = bounded(1e-12, lr_kl_target=1e3, lr_max=3e-2)
    assert stats["losses/update_kept"] == 0.0
    for p, q in zip(model.parameters(), start.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert stats["charts/learning_rate"] == pytest.approx(3e-2 / 16)


def test_update_kl_limit_is_off_by_default_and_checked():
    from learner.config import RunConfig, config_problems, ppo_from_saved

    for name in ("update_kl_limit", "update_kl_max_limit"):
        assert getattr(PPOConfig(), name) is None and ppo_from_saved({"lr": 1e-3})[name] is None
    stats = PPO(_model(), PPOConfig(epochs=1, minibatches=1), seed=0).update(_batch(_model()))
    assert "losses/update_kl" not in stats
    cfg = RunConfig()
    cfg.ppo = PPOConfig(update_kl_limit=0.0, update_kl_max_limit=-1.0)
    problems = " ".join(config_problems(cfg))
    assert "ppo.update_kl_limit must be > 0" in problems and "ppo.update_kl_max_limit must be > 0" in problems


def test_kl_adaptive_lr_settings_are_checked():
    from learner.config import RunConfig, config_problems

    cfg = RunConfig()
    cfg.ppo = PPOConfig(lr=1e-3, lr_kl_target=0.01, lr_min=1e-3, lr_max=5e-4, anneal_lr=True)
    problems = " ".join(config_problems(cfg))
    assert "lr_min <= ppo.lr_max" in problems and "choose one" in problems
    cfg.ppo = PPOConfig(lr=1e-3, lr_kl_target=0.01, lr_min=2e-3)  # the bound defaults to lr, below lr_min
    assert "ppo.lr_min <= ppo.lr_max (None: ppo.lr)" in " ".join(config_problems(cfg))
    cfg.ppo = PPOConfig(lr=1e-3, lr_kl_target=0.01)
    assert config_problems(cfg) == []


def test_ppo_loss_for_gaussian_actions_matches_hand_computation():
    """Continuous actions: log-density and entropy of a diagonal Gaussian, summed over action dimensions."""
    g = np.random.default_rng(0)
    mean, log_std = g.normal(size=(2, 3, 2)), g.normal(scale=0.3, size=(2, 3, 2))
    actions = g.normal(size=(2, 3, 2))
    std = np.exp(log_std)
    logp = (-0.5 * ((actions - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    ratios = np.full((2, 3), 1.1)
    adv, values, returns = g.normal(size=(2, 3)), g.normal(size=(2, 3)), g.normal(size=(2, 3))
    cfg = PPOConfig(clip_coef=0.2, norm_adv=False, clip_vloss=False, ent_coef=0.01, vf_coef=0.5)

    def t(a):
        return torch.tensor(a, dtype=torch.float64)

    out = ppo_loss(
        t(np.concatenate([mean, log_std], -1)),
        t(values),
        t(actions),
        t(logp - np.log(ratios)),
        t(adv),
        t(returns),
        t(values),
        cfg,
        "continuous",
    )
    entropy = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum(-1).mean()
    assert float(out.entropy) == pytest.approx(entropy, rel=1e-9)
    assert float(out.policy_loss) == pytest.approx((-adv * 1.1).mean(), rel=1e-9)
    assert float(out.approx_kl) == pytest.approx(((ratios - 1) - np.log(ratios)).mean(), rel=1e-9)


def test_update_refreshes_the_statistics_and_fits_values_in_standardised_units():
    """Observation statistics come from the batch's T steps (obs[T] is the next segment's obs[0]); the value head is
    fitted to (R - mu_R) / sigma_R with the return statistics of this batch merged in."""
    cfg = PPOConfig(epochs=1, minibatches=1, lr=1e-3)
    model = _model(normalize=True)
    batch = _batch(model)
    t = batch.actions.shape[0]
    obs = batch.obs[:t].reshape(-1, batch.obs.shape[-1]).double()
    reference = copy.deepcopy(model)
    reference.obs_norm.update(batch.obs[:t])
    with torch.no_grad():
        _, values, _ = reference(batch.obs, batch.reset, batch.initial_state)
        _, returns = compute_gae(
            batch.rewards, values, batch.terminated, batch.truncated, batch.bootstrap_values, cfg.gamma, cfg.gae_lambda
        )
    stats = PPO(model, cfg, seed=0).update(batch)
    # the prior count of 1e-4 pulls the merged statistics by ~1e-5 relative at this batch size
    torch.testing.assert_close(model.obs_norm.mean.double(), obs.mean(0), rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(model.obs_norm.var.double(), obs.var(0, unbiased=False), rtol=1e-3, atol=1e-4)
    sigma = float(returns.double().std(unbiased=False))
    assert float(model.value_norm.std()) == pytest.approx(sigma, rel=1e-3)
    # the head's output is the standardised value; before this first update the statistics were (0, 1), so the
    # values were the head's output, and the preservation (on by default) rescaled the head so that they stay: its
    # output is now (values - mu_R) / sigma_R
    target = (returns - model.value_norm.mean) / model.value_norm.std()
    head = (values[:-1] - model.value_norm.mean) / model.value_norm.std()
    expected = 0.5 * float(((head - target) ** 2).mean())
    assert stats["losses/value_loss"] == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("preserve", [True, False])
def test_moving_return_statistics_keep_every_states_value_only_with_preserve_values(preserve: bool):
    """With lr 0 no gradient step moves the model, so only the statistics update can change a value: with
    preserve_values the value head is rescaled so that no state's value moves, including states that are not in the
    batch (the ones a value fit cannot pull back); without it every value moves with the return statistics."""
    cfg = PPOConfig(epochs=1, minibatches=1, lr=0.0, preserve_values=preserve)
    model = _model(normalize=True)
    ppo = PPO(model, cfg, seed=0)
    ppo.update(_batch(model))  # the first update moves the statistics from (0, 1) to the first batch's
    unseen = torch.from_numpy(np.random.default_rng(7).normal(3.0, 2.0, size=(6, 3, OBS_SPACE.shape[0]))).float()
    reset = torch.zeros(6, 3, dtype=torch.bool)
    reset[0] = True
    with torch.no_grad():
        _, before, _ = model(unseen, reset, model.initial_state(3))
        mean_before = model.value_norm.mean.clone()
    batch = _batch(model)
    batch.rewards.mul_(10.0).sub_(5.0)  # returns far from the first batch's: the statistics move a lot
    ppo.update(batch)
    with torch.no_grad():
        _, after, _ = model(unseen, reset, model.initial_state(3))
    assert abs(float(model.value_norm.mean - mean_before)) > 1.0
    if preserve:
        torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    else:
        assert float((after - before).abs().mean()) > 0.5


def test_update_reports_the_value_statistics_and_the_rescaled_head():
    """The values/ metrics are the statistics the model now holds; with lr 0 only the preservation changes the
    value head, so its weight norm moves by exactly old std / new std."""
    model = _model(normalize=True)
    ppo = PPO(model, PPOConfig(epochs=1, minibatches=1, lr=0.0), seed=0)
    first = ppo.update(_batch(model))
    assert first["values/return_mean"] == pytest.approx(float(model.value_norm.mean))
    assert first["values/return_std"] == pytest.approx(float(model.value_norm.std()))
    batch = _batch(model)
    batch.rewards.mul_(10.0)  # a wider spread of returns: the std grows, the head shrinks
    second = ppo.update(batch)
    assert second["values/return_std"] > first["values/return_std"]
    ratio = first["values/return_std"] / second["values/return_std"]
    assert second["values/head_weight_norm"] == pytest.approx(first["values/head_weight_norm"] * ratio, rel=1e-5)
    assert second["values/head_weight_norm"] == pytest.approx(float(model.value_output_layer().weight.detach().norm()))
    # a model without value normalisation has no value statistics to report
    assert not any(k.startswith("values/") for k in PPO(_model(), PPOConfig(), seed=0).update(_batch(_model())))


@pytest.mark.parametrize(("preserve", "power"), [(True, 1.0), (True, 2.0), (False, 2.0)])
def test_the_value_loss_is_weighted_by_a_power_of_the_return_std_only_with_preservation(preserve: bool, power: float):
    """With lr 0 both updates see the same model and batch: the total loss differs only in the value term's weight,
    vf_coef x the returns' std ** power with the preservation on, vf_coef otherwise."""
    stats = {}
    for p in (0.0, power):
        cfg = PPOConfig(epochs=1, minibatches=1, lr=0.0, preserve_values=preserve, preserve_values_loss_power=p)
        model = _model(normalize=True)
        stats[p] = PPO(model, cfg, seed=0).update(_batch(model))
    off, on = stats[0.0], stats[power]
    assert on["losses/value_loss"] == pytest.approx(off["losses/value_loss"], rel=1e-6)
    std = on["values/return_std"]
    assert abs(std - 1.0) > 0.1  # the batch's returns moved the statistics away from their start
    weight = 0.5 * std**power if preserve else 0.5
    expected = off["losses/loss"] + (weight - 0.5) * off["losses/value_loss"]
    assert on["losses/loss"] == pytest.approx(expected, rel=1e-5, abs=1e-6)
