"""ActorCritic: shapes and heads, sequence equals step-by-step through the wrapper, ONNX export at T=1."""

from __future__ import annotations

import io
import math

import gymnasium as gym
import numpy as np
import onnxruntime as ort
import pytest
import torch

from models import ActorCritic, build_actor_critic, small_config

VEC_SPACE = gym.spaces.Box(-1.0, 1.0, (16,), np.float32)  # T-Maze-like
IMG_SPACE = gym.spaces.Box(0, 255, (84, 84, 3), np.uint8)
ACTIONS = gym.spaces.Discrete(4)


def _kinds() -> list:
    out = []
    for kind, form in [
        ("gtrxl", "inputs"),
        ("gtrxl", "kv"),
        ("lstm", None),
        ("gru", None),
        ("agalite", None),
        ("galite", None),
    ]:
        cfg = small_config(kind, **({"memory_form": form} if form else {}))
        out.append(pytest.param(cfg, id=kind + (f"-{form}" if form else "")))
    for kind in ("agalite", "gru"):
        out.append(pytest.param(small_config(kind, episode_start_input=True), id=f"{kind}-episode-start"))
    return out


KINDS = _kinds()


def make(cfg, space=VEC_SPACE, seed: int = 0) -> ActorCritic:
    torch.manual_seed(seed)
    return build_actor_critic(cfg, space, ACTIONS)


@pytest.mark.parametrize("cfg", KINDS)
def test_sequence_equals_step_by_step_through_the_wrapper(cfg) -> None:
    ac = make(cfg)
    g = torch.Generator().manual_seed(0)
    t_len, batch = 64, 3
    obs = torch.rand(t_len, batch, 16, generator=g) * 2 - 1
    reset = torch.rand(t_len, batch, generator=g) < 0.05
    with torch.no_grad():
        logits, value, s_seq = ac(obs, reset, ac.initial_state(batch))
        state, ls, vs = ac.initial_state(batch), [], []
        for t in range(t_len):
            lg, v, state = ac(obs[t : t + 1], reset[t : t + 1], state)
            ls.append(lg)
            vs.append(v)
    assert logits.shape == (t_len, batch, 4) and value.shape == (t_len, batch)
    # float32 (the encoders cast observations to float32, so the wrapper cannot run in float64; the sequence models'
    # own algebra is checked in float64 in test_contract.py). The two forms add the same terms in other orders:
    # over T = 64 steps each output accumulates <= ~T * d_model = 2e3 products, so rounding is below
    # 2e3 * eps32 (1.2e-4) of the magnitudes involved on any CPU; 1e-3 of each tensor's largest entry leaves room,
    # while a wrapper mistake (state not carried, a reset ignored) changes the outputs by far more than that.
    assert gap(torch.cat(ls), logits) < 1e-3
    assert gap(torch.cat(vs), value) < 1e-3
    for k in s_seq:
        assert gap(state[k], s_seq[k]) < 1e-3, k


def gap(got: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest difference relative to the largest magnitude of ``ref`` (at least 1e-2, so a tensor of zeros works)."""
    diff = (got.double() - ref.double()).abs().max().item()
    return diff / max(ref.double().abs().max().item(), 1e-2)


def test_attributes_and_head_init() -> None:
    ac = make(small_config("gru"))
    assert ac.obs_shape == (16,) and ac.obs_dtype == "float32" and ac.num_actions == 4
    assert ac.state_spec() == ac.core.state_spec()
    # small policy head: near-uniform initial policy
    with torch.no_grad():
        logits, _, _ = ac(torch.randn(1, 8, 16), torch.zeros(1, 8, dtype=torch.bool), ac.initial_state(8))
    assert logits.abs().max().item() < 0.2
    head = ac.policy[2]
    assert isinstance(head, torch.nn.Linear)
    last = head.weight
    assert torch.allclose(last @ last.T, 1e-4 * torch.eye(4), atol=1e-6), "orthogonal(0.01) last policy layer"


def test_image_observations_use_the_cnn_and_scale_uint8() -> None:
    ac = make(small_config("lstm"), IMG_SPACE)
    assert type(ac.encoder).__name__ == "NatureCNN" and ac.obs_dtype == "uint8"
    obs = torch.randint(0, 256, (2, 2, 84, 84, 3), dtype=torch.uint8)
    with torch.no_grad():
        l_u8, v_u8, _ = ac(obs, torch.zeros(2, 2, dtype=torch.bool), ac.initial_state(2))
    # the same images as floats in [0, 1] through a float-typed twin give the same outputs
    twin = ActorCritic(ac.cfg, (84, 84, 3), "float32", 4)
    twin.load_state_dict(ac.state_dict())
    with torch.no_grad():
        l_f, v_f, _ = twin(obs.float() / 255, torch.zeros(2, 2, dtype=torch.bool), twin.initial_state(2))
    assert (l_u8 - l_f).abs().max().item() < 1e-5 and (v_u8 - v_f).abs().max().item() < 1e-5


def test_encoder_choices_and_bad_spaces() -> None:
    assert type(make(small_config("gru", encoder="mlp")).encoder).__name__ == "MLPEncoder"
    with pytest.raises(TypeError, match="1-D float"):
        build_actor_critic(small_config("gru"), VEC_SPACE, gym.spaces.Box(-1, 1, (2, 2)))
    with pytest.raises(TypeError, match="Discrete"):
        build_actor_critic(small_config("gru"), VEC_SPACE, gym.spaces.MultiDiscrete([2, 3]))
    with pytest.raises(TypeError, match="Box observation"):
        build_actor_critic(small_config("gru"), gym.spaces.Discrete(3), ACTIONS)
    with pytest.raises(ValueError, match="auto"):
        build_actor_critic(small_config("gru"), gym.spaces.Box(0, 1, (4, 4), np.float32), ACTIONS)
    with pytest.raises(ValueError, match="unknown model kind"):
        small_config("transformer")


class _Step(torch.nn.Module):
    """T=1 step function: obs[B, ...], reset[B], *state -> logits, value, *state."""

    def __init__(self, ac: ActorCritic) -> None:
        super().__init__()
        self.ac = ac
        self.names = list(ac.state_spec())

    def forward(self, obs, reset, *state):
        logits, value, new = self.ac(obs[None], reset[None], dict(zip(self.names, state, strict=True)))
        return (logits[0], value[0], *[new[n] for n in self.names])


@pytest.mark.parametrize(
    "cfg,space",
    [
        pytest.param(small_config("gtrxl", memory_form="kv"), VEC_SPACE, id="gtrxl-kv-vector"),
        pytest.param(small_config("gtrxl"), IMG_SPACE, id="gtrxl-inputs-image"),
        pytest.param(small_config("lstm"), VEC_SPACE, id="lstm-vector"),
        pytest.param(small_config("gru"), IMG_SPACE, id="gru-image"),
    ],
)
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning")
def test_t1_step_exports_to_onnx_and_runs(cfg, space) -> None:
    ac = make(cfg, space).eval()
    step = _Step(ac)
    names = step.names
    batch = 2
    state = ac.initial_state(batch)
    image = space is IMG_SPACE
    obs = torch.randint(0, 256, (batch, 84, 84, 3), dtype=torch.uint8) if image else torch.rand(batch, 16)
    reset = torch.tensor([True, False])
    io_names = ["obs", "reset", *names, "logits", "value", *[f"{n}_out" for n in names]]
    buf = io.BytesIO()
    torch.onnx.export(
        step, (obs, reset, *[state[n] for n in names]), buf, dynamo=False, opset_version=17,  # type: ignore[arg-type]  # export writes to a file object too; its annotation names only paths
        input_names=io_names[: 2 + len(names)], output_names=io_names[2 + len(names) :],
        dynamic_axes={n: {0: "batch"} for n in io_names},
    )  # fmt: skip
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    # run 3 steps at a batch size other than the traced one, carrying the state through ONNX
    b2 = 3
    st_np = {n: v.numpy() for n, v in ac.initial_state(b2).items()}
    st_t = ac.initial_state(b2)
    g = torch.Generator().manual_seed(1)
    for t in range(3):
        o = (torch.randint(0, 256, (b2, 84, 84, 3), dtype=torch.uint8, generator=g) if space is IMG_SPACE
             else torch.rand(b2, 16, generator=g))  # fmt: skip
        r = torch.tensor([t == 0, False, t == 2])
        outs = sess.run(None, {"obs": o.numpy(), "reset": r.numpy(), **st_np})
        with torch.no_grad():
            logits, value, st_t = ac(o[None], r[None], st_t)
        assert np.abs(outs[0] - logits[0].numpy()).max() < 1e-4
        assert np.abs(outs[1] - value[0].numpy()).max() < 1e-4
        st_np = dict(zip(names, outs[2:], strict=True))
        for n in names:
            assert st_np[n].dtype == st_t[n].numpy().dtype


def test_continuous_head_outputs_means_and_a_learned_log_std() -> None:
    torch.manual_seed(0)
    box = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    ac = build_actor_critic(small_config("agalite"), VEC_SPACE, box)
    assert ac.action_kind == "continuous" and ac.num_actions == 3 and ac.policy_output_dim == 6
    assert ac.log_std is not None
    with torch.no_grad():
        ac.log_std.copy_(torch.tensor([-0.5, 0.0, 0.3]))
    obs = torch.randn(5, 2, *VEC_SPACE.shape)
    params, value, _ = ac(obs, torch.zeros(5, 2, dtype=torch.bool), ac.initial_state(2))
    assert params.shape == (5, 2, 6) and value.shape == (5, 2)
    assert torch.equal(params[..., 3:], ac.log_std.expand(5, 2, 3))
    a = torch.randn(5, 2, 3)
    dist = ac.distribution(params)
    mean, std = params[..., :3], params[..., 3:].exp()
    manual = (-0.5 * ((a - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
    assert torch.allclose(dist.log_prob(a), manual, atol=1e-5)
    dist.log_prob(a).sum().backward()
    assert ac.log_std.grad is not None and ac.log_std.grad.abs().sum() > 0


def test_the_episode_start_input_reaches_the_sequence_model() -> None:
    """With ``episode_start_input`` the reset flag is one more feature: once its weights are non-zero, the same
    observation and state give other outputs when the flag differs only in whether the step is an episode's first
    (the state is zero either way)."""
    ac = make(small_config("gru", episode_start_input=True))
    assert ac.core.input_dim == ac.encoder.output_dim + 1
    with torch.no_grad():
        ac.core.input_layer().weight[:, -1].normal_(generator=torch.Generator().manual_seed(1))
    obs = torch.rand(1, 2, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first, _, _ = ac(obs, torch.tensor([[True, True]]), ac.initial_state(2))
        later, _, _ = ac(obs, torch.tensor([[False, False]]), ac.initial_state(2))
    assert not torch.allclose(first, later)
    plain = make(small_config("gru", episode_start_input=False))
    assert plain.core.input_dim == plain.encoder.output_dim


@pytest.mark.parametrize("kind", ["agalite", "galite", "gtrxl", "lstm", "gru"])
def test_the_episode_start_flag_starts_with_no_weight_and_learns_one(kind: str) -> None:
    """A fresh model acts as it would without the flag (its input column is zero, so the first step's features are
    not perturbed by a random direction), yet a loss at an episode's first step gives that column a gradient."""
    ac = make(small_config(kind, episode_start_input=True))
    column = ac.core.input_layer().weight[:, -1]
    assert ac.core.input_layer().weight.shape[1] == ac.core.input_dim
    assert torch.count_nonzero(column) == 0
    obs = torch.rand(3, 2, 16, generator=torch.Generator().manual_seed(0))
    reset = torch.tensor([[True, True], [False, False], [False, False]])
    with torch.no_grad():
        first, value_first, _ = ac(obs, reset, ac.initial_state(2))
        later, value_later, _ = ac(obs, torch.zeros_like(reset), ac.initial_state(2))
    assert torch.equal(first[0], later[0]) and torch.equal(value_first[0], value_later[0])
    logits, value, _ = ac(obs, reset, ac.initial_state(2))
    (logits[0].sum() + value[0].sum()).backward()
    grad = ac.core.input_layer().weight.grad
    assert grad is not None and torch.count_nonzero(grad[:, -1]) > 0
