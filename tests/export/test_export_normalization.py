"""Normalisation statistics in the exported graph: ONNX Runtime equals torch with non-trivial statistics, and new
statistics reach a running policy through a weights-only update (they are initializers like any weight)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from envs import env_spaces
from export import check_parity, export_step_function, weights_for
from learner.checkpoint import load_checkpoint, save_checkpoint
from learner.config import RunConfig
from learner.trainer import Trainer
from models.actor_critic import ActorCritic
from models.config import ModelConfig
from policy.runtime import StepFunction


def _model() -> ActorCritic:
    torch.manual_seed(0)
    return ActorCritic(ModelConfig(kind="gru", rnn_hidden=16), (6,), "float32", 3)


def _shift_statistics(ac: ActorCritic) -> None:
    gen = torch.Generator().manual_seed(3)
    assert ac.obs_norm is not None and ac.value_norm is not None
    ac.obs_norm.update(5.0 + 3.0 * torch.randn(500, 6, generator=gen))
    ac.value_norm.update(100.0 + 40.0 * torch.randn(500, generator=gen))


def test_onnx_runtime_equals_torch_with_updated_statistics() -> None:
    ac = _model()
    _shift_statistics(ac)
    exported = export_step_function(ac, policy_version=0)
    assert {"obs_norm.mean", "obs_norm.var", "value_norm.mean", "value_norm.var"} <= set(exported.metadata["weights"])
    result = check_parity(ac, exported.onnx_bytes, steps=40, batch=4)
    # values are ~100 after denormalisation: float32 carries ~7 significant digits, so 1e-3 absolute is ~1e-5 relative
    assert result["logits"] < 1e-4 and result["value"] < 1e-3 and result["state"] < 1e-4


def test_weights_only_update_carries_new_statistics() -> None:
    ac = _model()
    first = export_step_function(ac, policy_version=0)
    live = StepFunction.from_bytes(first.onnx_bytes)
    _shift_statistics(ac)
    updated = live.with_weights(weights_for(ac, first), policy_version=1)
    fresh = StepFunction.from_bytes(export_step_function(ac, policy_version=1).onnx_bytes)
    rng = np.random.default_rng(0)
    obs = (5.0 + 3.0 * rng.standard_normal((4, 6))).astype(np.float32)
    reset = np.ones(4, dtype=bool)
    before = live.run(obs, reset, live.initial_state(4))
    after = updated.run(obs, reset, updated.initial_state(4))
    reference = fresh.run(obs, reset, fresh.initial_state(4))
    np.testing.assert_array_equal(after[0], reference[0])
    np.testing.assert_array_equal(after[1], reference[1])
    assert np.abs(after[1] - before[1]).min() > 10.0  # the value scale moved from ~1 to ~100


def test_statistics_survive_a_checkpoint(tmp_path: Path) -> None:
    """The statistics are parameters (and a count buffer) of the model's state_dict: a checkpoint carries them."""
    cfg = RunConfig()
    cfg.model = ModelConfig(kind="gru", rnn_hidden=16)
    spaces = env_spaces(cfg.env.id, **cfg.env.kwargs_dict())
    trainer = Trainer(cfg, *spaces)
    assert trainer.model.obs_norm is not None
    trainer.model.obs_norm.update(7.0 + torch.randn(100, *trainer.model.obs_shape))
    save_checkpoint(tmp_path, trainer.state_dict())
    resumed = Trainer(cfg, *spaces)
    state = load_checkpoint(tmp_path)
    assert state is not None
    resumed.load_state_dict(state)
    saved, restored = trainer.model.obs_norm, resumed.model.obs_norm
    assert restored is not None
    for name in ("mean", "var", "count"):
        torch.testing.assert_close(getattr(restored, name), getattr(saved, name))
    assert float(restored.count) > 100


def test_per_pixel_statistics_of_an_image_policy_are_in_the_graph() -> None:
    """``normalize_images``: uint8 frames in, standardised per pixel inside the graph, ONNX Runtime equals torch."""
    torch.manual_seed(0)
    ac = ActorCritic(ModelConfig(kind="gru", rnn_hidden=16, normalize_images=True), (36, 36, 3), "uint8", 3)
    assert ac.obs_norm is not None
    gen = torch.Generator().manual_seed(4)
    frames = torch.randint(0, 256, (300, 36, 36, 3), generator=gen).float()
    frames[:, :12] = 40.0  # a band that never changes: zero after standardisation, as in the graph
    ac.obs_norm.update(frames)
    exported = export_step_function(ac, policy_version=0)
    assert {"obs_norm.mean", "obs_norm.var"} <= set(exported.metadata["weights"])
    result = check_parity(ac, exported.onnx_bytes, steps=10, batch=3)
    assert result["logits"] < 1e-4 and result["value"] < 1e-4 and result["state"] < 1e-4
