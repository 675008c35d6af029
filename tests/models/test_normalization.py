"""Running statistics inside the model (models/normalization.py): the merge is exact, and they reach the graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.actor_critic import ActorCritic
from models.config import ModelConfig
from models.encoders import NatureCNN
from models.normalization import RunningNorm, preserve_denormalized_outputs


def test_merged_batches_equal_the_statistics_of_all_data() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(1000, 4)) * np.array([1.0, 10.0, 0.1, 1.0])
    norm = RunningNorm((4,))
    for chunk in np.array_split(data, 7):
        norm.update(torch.from_numpy(chunk))
    # count starts at 1e-4 (a prior of mean 0, variance 1 with that weight): its pull is ~1e-7 relative
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(norm.var.numpy(), data.var(0), rtol=1e-5)
    assert float(norm.count) == pytest.approx(1000, abs=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_float32_batch_statistics_match_float64_for_far_offsets_and_frames(dtype: type) -> None:
    """The batch's statistics are reduced in float32 (only the merge is float64): returns far from zero with a
    small spread, and uint8 frames, must still come out as float64 arithmetic on the same data gives them."""
    rng = np.random.default_rng(1)
    if dtype is np.uint8:
        data = rng.integers(0, 256, size=(300, 6, 5, 3)).astype(np.uint8)
    else:
        data = (1e4 + rng.normal(0.0, 0.5, size=(300, 4))).astype(np.float32)
    norm, reference = RunningNorm(data.shape[1:]), RunningNorm(data.shape[1:])
    for chunk in np.array_split(data, 3):
        norm.update(torch.from_numpy(chunk))
        reference.update(torch.from_numpy(chunk.astype(np.float64)))  # float64 batches are reduced in float64
    np.testing.assert_allclose(norm.mean.numpy(), reference.mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(norm.var.numpy(), reference.var.numpy(), rtol=1e-4)


def test_standardises_clips_and_round_trips() -> None:
    norm = RunningNorm(())
    norm.update(torch.tensor([1.0, 3.0, 5.0, 7.0]))  # mean 4, var 5
    x = torch.tensor([4.0, 4.0 + 5**0.5, 1000.0])
    # the 1e-4 prior count pulls mean and variance by ~1e-4 relative
    np.testing.assert_allclose(norm(x).numpy(), [0.0, 1.0, 5.0], atol=1e-3)
    np.testing.assert_allclose(norm.denormalize(torch.tensor([0.0, 1.0])).numpy(), [4.0, 4.0 + 5**0.5], rtol=1e-3)


def test_statistics_are_untrained_parameters_of_the_actor_critic() -> None:
    cfg = ModelConfig(kind="gru", rnn_hidden=16)
    ac = ActorCritic(cfg, (5,), "float32", 3)
    names = {n for n, p in ac.named_parameters() if not p.requires_grad}
    assert names == {"obs_norm.mean", "obs_norm.var", "value_norm.mean", "value_norm.var"}
    assert "obs_norm.count" in ac.state_dict()
    images = ActorCritic(cfg, (36, 36, 3), "uint8", 3)
    assert images.obs_norm is None  # the CNN scales pixels itself


def test_images_standardised_per_pixel_reach_the_cnn_unscaled() -> None:
    """With ``normalize_images`` a pixel that rarely changes (a cue) reaches the CNN as loud as one that often does,
    and the CNN must not divide the standardised values by 255 again."""
    torch.manual_seed(0)
    cfg = ModelConfig(kind="gru", rnn_hidden=16, normalize_images=True)
    ac = ActorCritic(cfg, (36, 36, 3), "uint8", 3)
    assert ac.obs_norm is not None and ac.obs_norm.mean.shape == (36, 36, 3)
    frames = torch.zeros(200, 36, 36, 3, dtype=torch.uint8)
    frames[::10, 0, 0, 0] = 255  # one pixel lit in a tenth of the frames
    ac.obs_norm.update(frames)
    lit = ac.obs_norm(frames[:1].float())
    assert float(lit[0, 0, 0, 0]) == pytest.approx(3.0, rel=1e-3)  # (255 - 25.5) / 76.5
    assert float(lit[0, 1:].abs().max()) == 0.0
    seen: list[torch.Tensor] = []
    assert isinstance(ac.encoder, NatureCNN) and ac.encoder.scale == 1.0
    ac.encoder.conv.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    ac(frames[:1].unsqueeze(1), torch.ones(1, 1, dtype=torch.bool), ac.initial_state(1))
    torch.testing.assert_close(seen[0].permute(0, 2, 3, 1), lit)


def test_value_output_is_in_return_units() -> None:
    torch.manual_seed(0)
    ac = ActorCritic(ModelConfig(kind="gru", rnn_hidden=16), (5,), "float32", 3)
    obs = torch.randn(4, 2, 5)
    reset = torch.ones(4, 2, dtype=torch.bool)
    _, before, _ = ac(obs, reset, ac.initial_state(2))
    assert ac.value_norm is not None
    ac.value_norm.update(torch.tensor([100.0, 300.0]))  # mean 200, std 100
    _, after, _ = ac(obs, reset, ac.initial_state(2))
    np.testing.assert_allclose(after.detach().numpy(), 200.0 + 100.0 * before.detach().numpy(), rtol=1e-4)


def test_preserved_outputs_stay_in_return_units_and_non_finite_statistics_leave_the_layer_alone() -> None:
    torch.manual_seed(0)
    layer, norm = torch.nn.Linear(8, 1), RunningNorm(())
    x = torch.randn(64, 8)
    with torch.no_grad():
        before = norm.denormalize(layer(x).squeeze(-1))
        for returns in (torch.randn(100) * 3 - 2, torch.randn(50) * 0.1 - 10, torch.randn(20) * 30 + 5):
            old = norm.mean.clone(), norm.std()
            norm.update(returns)
            preserve_denormalized_outputs(layer, norm, *old)
        torch.testing.assert_close(norm.denormalize(layer(x).squeeze(-1)), before, rtol=1e-4, atol=1e-4)
        weight = layer.weight.clone()
        old = norm.mean.clone(), norm.std()
        norm.mean.fill_(float("nan"))
        preserve_denormalized_outputs(layer, norm, *old)
    assert torch.equal(layer.weight, weight)
