"""Torch -> ONNX: the step function of an actor-critic, its metadata, weights-only updates and parity checks.

CLI: ``python -m export --help``.
"""

from typing import Any

from export.checkpoint import LoadedCheckpoint, checkpoint_dict, load_actor_critic_from_checkpoint
from export.parity import check_parity
from export.step_function import (
    DEFAULT_OPSET,
    ExportedPolicy,
    export_step_function,
    graph_structure_sha256,
    save_policy,
    weights_for,
)
from policy.metadata import PolicyError, PolicyMetadata, space_from_dict, space_to_dict

__all__ = [
    "DEFAULT_OPSET",
    "ExportedPolicy",
    "LoadedCheckpoint",
    "PolicyError",
    "PolicyMetadata",
    "check_parity",
    "checkpoint_dict",
    "export_from_checkpoint",
    "export_step_function",
    "graph_structure_sha256",
    "load_actor_critic_from_checkpoint",
    "save_policy",
    "space_from_dict",
    "space_to_dict",
    "weights_for",
]


def export_from_checkpoint(path: str, **kwargs: Any) -> ExportedPolicy:
    """Export the actor-critic stored in checkpoint ``path`` with its spaces and policy version."""
    ck = load_actor_critic_from_checkpoint(path)
    kwargs.setdefault("policy_version", ck.policy_version)
    return export_step_function(
        ck.ac,
        observation_space=ck.observation_space,
        action_space=ck.action_space,
        **kwargs,
    )
