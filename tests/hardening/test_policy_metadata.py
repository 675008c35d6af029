"""An exported policy whose metadata disagrees with its graph (state shapes, action width) is refused at load in
one line, instead of loading and then failing inside ONNX Runtime (or acting with the wrong number of actions)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
import torch

import envs
from export import export_step_function, save_policy
from models.registry import build_actor_critic, small_config
from policy.metadata import METADATA_KEY, PolicyError
from policy.runtime import StepFunction


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    obs_space, act_space = envs.env_spaces(envs.TMAZE_ID, corridor_length=4)
    torch.manual_seed(0)
    ac = build_actor_critic(small_config("agalite"), obs_space, act_space)
    exported = export_step_function(ac, observation_space=obs_space, action_space=act_space)
    return save_policy(exported, tmp_path_factory.mktemp("policy") / "policy.onnx")


def _with_metadata(path: Path, edit: Callable[[dict], None]) -> bytes:
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    meta = json.loads(props[METADATA_KEY])
    edit(meta)
    for p in model.metadata_props:
        if p.key == METADATA_KEY:
            p.value = json.dumps(meta)
    return model.SerializeToString()


def _grow_first_state(meta: dict) -> None:
    meta["state"][0]["shape"] = [*meta["state"][0]["shape"][:-1], meta["state"][0]["shape"][-1] + 1]


def _drop_a_state_dim(meta: dict) -> None:
    meta["state"][0]["shape"] = meta["state"][0]["shape"][1:]


def _more_actions(meta: dict) -> None:
    meta["num_actions"] += 1


def _wider_obs(meta: dict) -> None:
    meta["obs_shape"] = [meta["obs_shape"][0] + 3]


@pytest.mark.parametrize(
    ("edit", "names"),
    [
        (_grow_first_state, "graph input"),
        (_drop_a_state_dim, "graph input"),
        (_more_actions, "graph output 'logits'"),
        (_wider_obs, "graph input 'obs'"),
    ],
)
def test_metadata_that_disagrees_with_the_graph_is_refused_at_load(policy_file, edit, names):
    StepFunction.from_file(policy_file)  # the untouched file loads
    with pytest.raises(PolicyError) as info:
        StepFunction.from_bytes(_with_metadata(policy_file, edit))
    message = str(info.value)
    assert "\n" not in message and names in message and "metadata says" in message, message
