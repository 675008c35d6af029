"""Several learner ranks (torch.distributed, gloo, real processes on loopback): one update on two ranks, each
training on its share of every minibatch, equals the single learner's update on the whole batch."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from gymnasium import spaces

from envs import env_spaces
from learner import distributed
from learner.config import RunConfig, load_preset
from learner.distributed import RankInfo
from learner.trainer import Trainer
from protocol import Segment
from tests.helpers.ports import free_ports

T = 8
ENVS_PER_SEGMENT = 2
SEGMENTS = 3  # 6 env rows, 2 minibatches of 3: one rank trains on 2 rows, the other on 1


ADAPTIVE = "+kl-adaptive-lr"  # a preset name with this suffix: the learning rate follows the minibatches' KL


def _config(preset: str) -> RunConfig:
    base = load_preset(preset.removesuffix(ADAPTIVE))
    ppo = dataclasses.replace(base.ppo, epochs=2, minibatches=2, lr=1e-3, norm_adv=True)
    if preset.endswith(ADAPTIVE):
        ppo = dataclasses.replace(ppo, anneal_lr=False, lr_kl_target=0.004, lr_max=3e-3)
    return dataclasses.replace(base, ppo=ppo, segment_length=T, batch_envs=SEGMENTS * ENVS_PER_SEGMENT, seed=3)


def _spaces(preset: str):
    cfg = _config(preset)
    return env_spaces(cfg.env.id, **cfg.env.kwargs_dict())


def _segments(trainer: Trainer) -> list[Segment]:
    """Deterministic segments with episode ends inside, so GAE and the resets matter."""
    out = []
    obs_space, act_space = trainer.observation_space, trainer.action_space
    assert isinstance(obs_space, spaces.Box) and isinstance(act_space, spaces.Discrete)
    obs_dim, num_actions = int(np.prod(obs_space.shape)), int(act_space.n)
    for i in range(SEGMENTS):
        rng = np.random.default_rng(100 + i)
        b = ENVS_PER_SEGMENT
        terminated = np.zeros((T, b), dtype=bool)
        terminated[T // 2, 0] = True
        reset = np.zeros((T + 1, b), dtype=bool)
        reset[0] = True
        reset[1:] = terminated
        state = {k: v.detach().cpu().numpy() for k, v in trainer.model.initial_state(b).items()}
        out.append(
            Segment(
                actor_id=f"a{i}",
                run_id="r",
                seq=0,
                policy_version=0,
                obs=rng.integers(0, 2, size=(T + 1, b, obs_dim)).astype(np.float32),
                actions=rng.integers(0, num_actions, size=(T, b)).astype(np.int64),
                logp=np.full((T, b), math.log(1.0 / num_actions), dtype=np.float32),
                rewards=rng.normal(size=(T, b)).astype(np.float32),
                terminated=terminated,
                truncated=np.zeros((T, b), dtype=bool),
                reset=reset,
                bootstrap_values=np.zeros((T, b), dtype=np.float32),
                initial_state=state,
                episodes=[],
            )
        )
    return out


def _rank_main(rank: int, world: int, port: int, out_dir: str, preset: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    info = RankInfo(rank=rank, world_size=world)
    distributed.init(info, torch.device("cpu"))
    try:
        obs_space, act_space = _spaces(preset)
        trainer = Trainer(_config(preset), obs_space, act_space, ranks=info)
        # Rank 0 holds the batch; the others get it through the same broadcast the run loop uses.
        segments = distributed.broadcast_batch(_segments(trainer) if rank == 0 else None)
        assert segments is not None
        for _ in range(2):
            trainer.update(segments)
        torch.save(
            {
                "model": trainer.model.state_dict(),
                "version": trainer.version,
                "env_steps": trainer.env_steps,
                "lr": trainer.ppo.optimizer.param_groups[0]["lr"],
            },
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        distributed.shutdown()


@pytest.mark.parametrize(
    "preset", ["test-tmaze-agalite", "test-tmaze-gtrxl", "test-tmaze-lstm", "test-tmaze-agalite" + ADAPTIVE]
)
def test_two_ranks_with_half_a_batch_each_equal_one_learner_on_the_whole_batch(tmp_path: Path, preset: str) -> None:
    """Every model kind: DDP needs every trained parameter to get a gradient in every step. With the KL-adaptive
    rate the ranks must also agree with the single learner on every rate change, although their shares of a
    minibatch differ (2 rows and 1): the KL they decide on is the whole minibatch's."""
    (port,) = free_ports(1)
    args = (2, port, str(tmp_path), preset)
    mp.start_processes(_rank_main, args=args, nprocs=2, join=True, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    torch.set_num_threads(1)
    obs_space, act_space = _spaces(preset)
    single = Trainer(_config(preset), obs_space, act_space)
    segments = _segments(single)
    for _ in range(2):
        single.update(segments)

    assert ranks[0]["version"] == ranks[1]["version"] == single.version == 2
    lr = single.ppo.optimizer.param_groups[0]["lr"]
    assert ranks[0]["lr"] == ranks[1]["lr"] == pytest.approx(lr, rel=1e-12)
    if preset.endswith(ADAPTIVE):
        assert lr != pytest.approx(1e-3)  # the rate did adapt, so the agreement above means something
    assert ranks[0]["env_steps"] == single.env_steps == 2 * T * SEGMENTS * ENVS_PER_SEGMENT
    initial = Trainer(_config(preset), obs_space, act_space).model.state_dict()
    moved = 0.0
    for name, value in single.model.state_dict().items():
        # the ranks took the same optimiser steps on the same all-reduced gradients: equal to the bit
        torch.testing.assert_close(ranks[0]["model"][name], ranks[1]["model"][name], rtol=0, atol=0)
        if not value.is_floating_point():
            torch.testing.assert_close(ranks[0]["model"][name], value, rtol=0, atol=0, msg=name)
            continue
        # and the single learner's steps, up to float32 sums taken in another order. Adam divides each element's
        # gradient by its running RMS, so an element whose gradient is at rounding level can step differently in
        # each order; what must agree is the step as a whole: the norm of the difference of the two learners' total
        # steps against the norm of the step (measured: at most 2.5e-4 of it for every kind, so 1e-2 leaves 40x).
        # A parameter with no gradient but rounding (GTrXL's r.bias: a key bias shared by all positions, which the
        # softmax cancels) moves ~1e-7 in both, in no common direction: the 1e-6 floor lets such a non-step differ.
        step_ranks, step_single = ranks[0]["model"][name] - initial[name], value - initial[name]
        gap, size = float((step_ranks - step_single).norm()), float(step_single.norm())
        assert gap <= 1e-2 * size + 1e-6, f"{name}: steps differ by {gap:.3g}, step size {size:.3g}"
        moved = max(moved, float(step_single.abs().max()))
    assert moved > 1e-4  # the updates changed the weights: the comparison above is not between two untouched models


def test_rank_from_env_reads_torchrun_variables_and_refuses_nonsense() -> None:
    assert distributed.rank_from_env({}) == RankInfo(0, 1, 0)
    info = distributed.rank_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert info == RankInfo(1, 2, 1) and info.distributed and not info.is_main
    with pytest.raises(ValueError, match="outside WORLD_SIZE"):
        distributed.rank_from_env({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="integers"):
        distributed.rank_from_env({"RANK": "x"})
