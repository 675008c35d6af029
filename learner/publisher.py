"""Policies out of the learner: the graph exported once, then weights.

The step function is traced and exported once per learner process (``export_step_function``); afterwards only the
weights change. Each update is published as a weights-only ``ModelUpdate`` (or a whole file when configured), a
joining actor gets the newest weights patched into the exported graph, and the run's final ``policy.onnx`` is the
same graph patched once more, with the final policy version in its metadata: the graph the actors ran is the one
deployed, and nothing is traced again.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import threading
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from export import ExportedPolicy, export_step_function, save_policy, weights_for
from models.actor_critic import ActorCritic
from policy.metadata import METADATA_KEY, PolicyMetadata
from policy.weights import replace_initializers
from protocol import ModelUpdate


class PolicyPublisher:
    """The exported graph plus the newest weights; thread-safe (the receiver thread asks for welcome policies)."""

    def __init__(self, exported: ExportedPolicy, *, weights_only_updates: bool = True) -> None:
        self.exported = exported
        self.weights_only_updates = weights_only_updates
        self._lock = threading.Lock()
        self._version = int(exported.metadata["policy_version"])
        self._weights: dict[str, np.ndarray] | None = None  # None: the exported graph's own weights
        self._welcome: tuple[int, ModelUpdate] | None = None

    @classmethod
    def export(
        cls,
        model: ActorCritic,
        *,
        version: int,
        observation_space: gymnasium.Space,
        action_space: gymnasium.Space,
        extra_metadata: dict[str, Any] | None = None,
        weights_only_updates: bool = True,
    ) -> PolicyPublisher:
        """Trace ``model`` (a CPU copy: the learner's model may live on a GPU) into the graph this run publishes."""
        exported = export_step_function(
            copy.deepcopy(model).cpu(),
            policy_version=version,
            observation_space=observation_space,
            action_space=action_space,
            extra_metadata=extra_metadata,
        )
        return cls(exported, weights_only_updates=weights_only_updates)

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    def set_weights(self, model: ActorCritic, version: int) -> ModelUpdate:
        """Take ``model``'s current weights as policy ``version``; returns the update to publish for it."""
        weights = weights_for(model, self.exported)
        with self._lock:
            self._weights, self._version = weights, int(version)
        if not self.weights_only_updates:
            return self.welcome_policy()
        # Weights-only updates name their graph by its structure hash (weights excluded), which every actor read
        # from the metadata of the full policy it was welcomed with.
        return ModelUpdate(
            version=int(version),
            kind="weights",
            onnx=None,
            weights=weights,
            graph_sha256=self.exported.graph_sha256,
            metadata={},
        )

    def _patched(self, version: int, weights: dict[str, np.ndarray] | None) -> tuple[bytes, dict[str, Any]]:
        meta = dataclasses.replace(PolicyMetadata.from_dict(self.exported.metadata), policy_version=version)
        onnx_bytes = replace_initializers(self.exported.onnx_bytes, weights or {}, {METADATA_KEY: meta.to_json()})
        return onnx_bytes, meta.to_dict()

    def welcome_policy(self) -> ModelUpdate:
        """The newest policy as a whole ONNX file, for actors that (re)join (built once per version)."""
        with self._lock:
            version, weights, cached = self._version, self._weights, self._welcome
        if cached is not None and cached[0] == version:
            return cached[1]
        onnx_bytes, metadata = self._patched(version, weights)
        update = ModelUpdate(
            version=version,
            kind="full",
            onnx=onnx_bytes,
            weights=None,
            graph_sha256=hashlib.sha256(onnx_bytes).hexdigest(),
            metadata=metadata,
        )
        with self._lock:
            self._welcome = (version, update)
        return update

    def final_policy(self) -> ExportedPolicy:
        """The newest policy as an exported file: the published graph with the newest weights and version."""
        with self._lock:
            version, weights = self._version, self._weights
        onnx_bytes, metadata = self._patched(version, weights)
        return ExportedPolicy(onnx_bytes=onnx_bytes, metadata=metadata, graph_sha256=self.exported.graph_sha256)

    def save_final(self, path: Path) -> Path:
        """Write the final ``policy.onnx`` + ``policy.json`` (write then rename)."""
        return save_policy(self.final_policy(), path)
