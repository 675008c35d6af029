"""Several learner ranks on torch.distributed: who this process is, and how rank 0 shares each batch.

Launched by ``torchrun --nproc-per-node N -m learner ...`` (or ``learner.launch --learner-ranks N``), every rank runs
the same trainer; DistributedDataParallel all-reduces the gradients (NCCL on GPUs, gloo on CPUs), so each optimiser
step is the same on every rank and the weights stay equal without being sent around.

The data path is "rank 0 receives and broadcasts": rank 0 alone binds the learner's sockets (one address for the
actors, one server doing admission, flow control, the lag rule and the drop counters, so every segment is counted
once), gathers a batch as a single learner does, and broadcasts it; every rank then holds the whole batch, updates
the running statistics and computes GAE on all of it (identical on every rank), and trains on its share of the env
rows of every minibatch. Letting the actors PUSH to every rank instead would need flow control and lag bookkeeping
across ranks, and each rank would still need the whole batch's statistics. What the broadcast costs is measured in
``bench/results/ddp_learner.md``.
"""

from __future__ import annotations

import datetime
import io
import logging
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from protocol import Segment

log = logging.getLogger("learner.distributed")

#: How long a collective waits for a missing rank before it fails (a dead rank then stops the job, not hangs it).
COLLECTIVE_TIMEOUT = datetime.timedelta(seconds=60)


@dataclass(frozen=True)
class RankInfo:
    """This process's place in the job; ``world_size == 1`` is the ordinary single learner."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def rank_from_env(environ: dict[str, str] | None = None) -> RankInfo:
    """The rank torchrun gives this process (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); a plain start is rank 0 of 1."""
    env = os.environ if environ is None else environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", "0"))
    except ValueError as err:
        raise ValueError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers: {err}") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return RankInfo(rank=rank, world_size=world, local_rank=local)


def init(info: RankInfo, device: torch.device) -> None:
    """Join the process group (rendezvous from torchrun's ``MASTER_ADDR``/``MASTER_PORT``). A no-op for one rank."""
    if not info.distributed or dist.is_initialized():
        return
    # On GPUs NCCL moves the gradients; the batches and the state go through gloo on the CPU either way.
    backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=info.rank, world_size=info.world_size, timeout=COLLECTIVE_TIMEOUT)
    log.info("rank %d of %d joined the process group (%s)", info.rank, info.world_size, backend)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _broadcast_bytes(payload: bytes | None, src: int = 0) -> bytes:
    """Broadcast one byte string from ``src`` (its length first, then the bytes as a uint8 tensor: gloo and NCCL
    both move tensors; CPU tensors here, a batch is small next to the update that follows)."""
    size = torch.tensor([0 if payload is None else len(payload)], dtype=torch.int64)
    dist.broadcast(size, src)
    buffer = torch.empty(int(size.item()), dtype=torch.uint8)
    if payload is not None:
        buffer.copy_(torch.frombuffer(bytearray(payload), dtype=torch.uint8))
    dist.broadcast(buffer, src)
    return buffer.numpy().tobytes()


def broadcast_batch(segments: Sequence[Segment] | None) -> list[Segment] | None:
    """Rank 0 passes its batch (``None``: training is over); every rank returns the same list (``None`` to stop).

    Pickled: the segments were decoded and validated by rank 0's server, and ranks of one job trust each other."""
    payload = pickle.dumps(None if segments is None else list(segments)) if dist.get_rank() == 0 else None
    return pickle.loads(_broadcast_bytes(payload))


def broadcast_state(state: dict[str, Any] | None) -> dict[str, Any]:
    """Rank 0's trainer state (weights, optimiser, counters, RNGs) to every rank: after a resume, every rank starts
    from rank 0's checkpoint, whether or not the others can read its run directory. (Loaded with
    ``weights_only=False``: it holds RNG states, and it comes from rank 0 of the same job, not from a file.)"""
    payload = None
    if dist.get_rank() == 0:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        payload = buffer.getvalue()
    return torch.load(io.BytesIO(_broadcast_bytes(payload)), weights_only=False)


def all_true(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on every rank: decisions that must agree (skip a step, stop the
    epochs early) or one rank would wait forever in a collective the others never reach."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def mean_over_ranks(value: float, weight: float = 1.0) -> float:
    """The mean of a per-rank mean over all ranks, each weighted by how many items its own mean is over: with
    unequal shares of a minibatch this is the whole minibatch's mean, the number a single learner would see."""
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([float(value) * weight, float(weight)], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor[0].item() / tensor[1].item())
