"""Helpers shared by the model tests (fixtures: test modules here are imported without a package)."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
import torch

from models.base import SequenceModel


def _check_step_onnx(model: SequenceModel, input_dim: int, steps: int = 12, seed: int = 7) -> None:
    """Export the model's single step (x, reset, *state) -> (y, *new_state) to ONNX and run it in ONNX Runtime
    next to torch for ``steps`` steps with resets in both envs (batch 2): outputs and states agree within
    ``1e-4 * (1 + max |torch value|)``.

    The bound: the two runtimes evaluate the same float32 graph with their own kernels (own summation orders and
    SIMD widths, which also differ between CPUs). Each output of a step accumulates <= ~2 * L * (d_model + d_ffc)
    = 256 products at the small sizes, so rounding is <= 256 * eps32 (3e-5) of the magnitudes involved; a wrong
    export (a reset missed, a state dropped) is off by more than 1e-2."""
    ort = pytest.importorskip("onnxruntime")
    model = model.eval()
    names = list(model.state_spec())

    class Step(torch.nn.Module):
        def __init__(self, m: torch.nn.Module) -> None:
            super().__init__()
            self.m = m

        def forward(self, x, reset, *state):
            y, new = self.m(x, reset, dict(zip(names, state, strict=True)))
            return (y, *[new[k] for k in names])

    batch = 2
    state = model.initial_state(batch)
    buf = io.BytesIO()
    torch.onnx.export(
        Step(model),
        (torch.zeros(1, batch, input_dim), torch.zeros(1, batch, dtype=torch.bool), *state.values()),
        buf,  # type: ignore[arg-type]  # export writes to a file object too; its annotation names only paths
        dynamo=False,
        opset_version=17,
        input_names=["x", "reset", *names],
        output_names=["y", *[f"new_{k}" for k in names]],
        dynamic_axes={"x": {1: "b"}, "reset": {1: "b"}, **{k: {0: "b"} for k in names}},
    )
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(seed)
    ort_state = {k: v.numpy() for k, v in state.items()}
    for t in range(steps):
        x = torch.randn(1, batch, input_dim, generator=g)
        reset = torch.tensor([[t == steps // 2, t == steps - 4]])
        with torch.no_grad():
            y, state = model(x, reset, state)
        out = sess.run(None, {"x": x.numpy(), "reset": reset.numpy(), **ort_state})
        ort_state = dict(zip(names, out[1:], strict=True))
        assert np.abs(out[0] - y.numpy()).max() < 1e-4 * (1 + np.abs(y.numpy()).max())
        for k in names:
            ref = state[k].numpy()
            assert np.abs(ort_state[k] - ref).max() < 1e-4 * (1 + np.abs(ref).max()), k


@pytest.fixture
def check_step_onnx() -> Callable[..., None]:
    return _check_step_onnx


def _gradient_gap(model: torch.nn.Module, x: torch.Tensor, reset: torch.Tensor, state: dict, w: torch.Tensor) -> float:
    """Max |gradient difference| between the T-step form and stepping one at a time, relative to the largest
    gradient, for the loss sum(y * w) (use float64: float32 differs by ~1e-5 from any change of summation order)."""
    grads = []
    for sequence in (True, False):
        if sequence:
            y = model(x, reset, state)[0]
        else:
            ys, s = [], state
            for t in range(x.shape[0]):
                yt, s = model(x[t : t + 1], reset[t : t + 1], s)
                ys.append(yt)
            y = torch.cat(ys)
        grads.append(torch.cat([g.flatten() for g in torch.autograd.grad((y * w).sum(), list(model.parameters()))]))
    return (grads[0] - grads[1]).abs().max().item() / grads[1].abs().max().item()


@pytest.fixture
def gradient_gap() -> Callable[..., float]:
    return _gradient_gap
