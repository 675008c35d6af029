"""The contract every sequence model keeps, so that training (T steps at once) and acting (T=1) share one forward.

A sequence model maps ``x[T, B, D_in]`` and ``reset[T, B]`` (true where step t is the first step of a new episode,
so the memory of env b must be cleared *before* consuming step t) plus a recurrent state to ``y[T, B, D_out]`` and
the new state. The state is a flat ``dict[str, Tensor]`` whose entries all have the batch axis first and a fixed
per-env shape; the names double as ONNX input/output names, so they are lower-case identifiers (``[a-z0-9_]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class StateSpec:
    """Shape (per env, batch axis excluded) and dtype of one named state tensor."""

    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


class SequenceModel(nn.Module):
    """Base class: subclasses implement ``state_spec`` and ``forward``; ``initial_state`` follows from the spec.

    Every state tensor starts at zero unless a subclass overrides ``initial_state`` (GTrXL's mask starts
    all-masked, for instance).
    """

    input_dim: int
    output_dim: int

    def state_spec(self) -> dict[str, StateSpec]:
        raise NotImplementedError

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> State:
        return {
            name: torch.zeros((batch, *spec.shape), dtype=spec.dtype, device=device)
            for name, spec in self.state_spec().items()
        }

    def state_floats_per_env(self) -> int:
        """Floating-point numbers of recurrent state per env (integer/bool bookkeeping excluded)."""
        return sum(s.numel for s in self.state_spec().values() if s.dtype.is_floating_point)

    def input_layer(self) -> nn.Linear:
        """The Linear that reads the model's input features (column i multiplies feature i).

        The actor-critic zero-initialises the weights of features it appends (the episode-start flag), so that a
        model starts as it would without them and the flag gains weight only where the gradient asks for it.
        """
        raise NotImplementedError

    def forward(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def check_inputs(self, x: torch.Tensor, reset: torch.Tensor, state: State) -> None:
        """Refuse inputs that break the contract above with a message naming the expected shapes; every model
        calls it first, so a wrong batch layout fails here instead of deep inside a matmul."""
        if x.dim() != 3 or x.shape[-1] != self.input_dim:
            raise ValueError(f"expected x[T, B, {self.input_dim}], got {tuple(x.shape)}")
        if reset.shape != x.shape[:2] or reset.dtype != torch.bool:
            raise ValueError(
                f"expected bool reset[T, B] = {tuple(x.shape[:2])}, got {reset.dtype} {tuple(reset.shape)}"
            )
        missing = set(self.state_spec()) - set(state)
        if missing:
            raise ValueError(f"state is missing {sorted(missing)}")
