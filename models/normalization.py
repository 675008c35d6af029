"""Running mean/variance statistics that live inside the model: observation and value normalisation.

Why inside the model: the statistics must be the same wherever the policy runs. Kept as parameters that the
optimiser never touches (``requires_grad=False``), they are exported as named initializers of the ONNX step
function, travel with every weights-only update and every checkpoint, and a deployed ``policy.onnx`` needs
nothing extra. The learner alone updates them (``update``), from the data of each PPO batch.
"""

from __future__ import annotations

import torch
from torch import nn


class RunningNorm(nn.Module):
    """Running mean and variance over the leading axes (Chan et al.'s parallel merge of batch statistics).

    ``forward`` standardises ``x`` with the current statistics and clips to +-``clip`` (an outlier cannot blow up
    the network's input); ``denormalize`` maps standardised values back. ``count`` starts at a small epsilon so the
    first update takes the batch's statistics almost entirely.
    """

    count: torch.Tensor  # buffer, registered in __init__ (declared for type checkers)

    def __init__(self, shape: tuple[int, ...], clip: float = 5.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.clip, self.eps = float(clip), float(eps)
        self.mean = nn.Parameter(torch.zeros(self.shape), requires_grad=False)
        self.var = nn.Parameter(torch.ones(self.shape), requires_grad=False)
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    def std(self) -> torch.Tensor:
        return torch.sqrt(self.var + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp((x - self.mean) / self.std(), -self.clip, self.clip)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std() + self.mean

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge the statistics of ``x`` [..., *shape] (every leading index is one sample)."""
        x = x.detach().reshape(-1, *self.shape)
        n = x.shape[0]
        if n == 0:
            return
        # The batch's own statistics in float32 (torch reduces in two passes, so they are accurate to its rounding);
        # only the merge below needs float64. Casting the batch itself to float64 first cost a copy of 8 bytes per
        # element: for a batch of 56x56x3 frames that was ~150 MB and a noticeable share of an update on 2 cores.
        batch_var, batch_mean = torch.var_mean(x if x.dtype == torch.float64 else x.float(), 0, correction=0)
        batch_mean, batch_var = batch_mean.double(), batch_var.double()
        mean, var, count = self.mean.double(), self.var.double(), self.count
        total = count + n
        delta = batch_mean - mean
        new_mean = mean + delta * (n / total)
        m2 = var * count + batch_var * n + delta.pow(2) * (count * n / total)
        self.mean.copy_(new_mean.to(self.mean.dtype))
        self.var.copy_((m2 / total).to(self.var.dtype))
        self.count.copy_(total)


@torch.no_grad()
def preserve_denormalized_outputs(
    last: nn.Linear, norm: RunningNorm, old_mean: torch.Tensor, old_std: torch.Tensor
) -> None:
    """Rescale the layer that feeds ``norm.denormalize`` so that its denormalised outputs stay what they were before
    ``norm``'s statistics moved from (``old_mean``, ``old_std``) to their current values, for every input.

    Why (PopArt's "preserving outputs precisely", van Hasselt et al. 2016): without it every update of the value
    statistics shifts the raw value of every state by the change of the mean, and only the states in the batch are
    fitted back. States the agent rarely visits keep outputs fitted under old statistics: on a long T-Maze, where the
    running mean of the returns lags the true value from above while the value is first learned, the values along the
    corridor became uneven where the walks thin out (mostly lower), and PPO learned to walk back (docs/learning.md).
    """
    new_mean, new_std = norm.mean.detach(), norm.std().detach()
    ratio = (old_std / new_std).to(last.weight.dtype)
    if not (bool(torch.isfinite(ratio).all()) and bool(torch.isfinite(new_mean).all())):
        return
    last.weight.mul_(ratio.reshape(-1, *([1] * (last.weight.dim() - 1))))
    last.bias.copy_(((old_std * last.bias + old_mean - new_mean) / new_std).to(last.bias.dtype))
