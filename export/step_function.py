"""Turn an actor-critic into a self-contained ONNX step function, with metadata, and keep its weights addressable.

The graph is one acting step: ``(obs[B,...], reset[B], *state) -> (logits[B,A], value[B], *new_state)``, with
``mean_log_std[B,2A]`` (the Gaussian's means, then its log stds) in place of the logits for continuous actions. It is
exported with the TorchScript exporter with ``do_constant_folding=False`` and ``keep_initializers_as_inputs=True``:
that combination keeps every torch parameter as its own named initializer (the exporter otherwise merges
initializers with equal values, e.g. fresh LayerNorm weights, and constant folding renames transposed weights), which
is what lets the learner publish new weights without re-exporting (:func:`weights_for`). The initializers are then
dropped from the graph inputs, so ONNX Runtime still treats them as constants and folds/fuses as usual.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from models.actor_critic import ActorCritic
from policy.files import write_atomically
from policy.metadata import (
    METADATA_KEY,
    POLICY_OUTPUTS,
    STATE_OUTPUT_PREFIX,
    PolicyError,
    PolicyMetadata,
    StateEntry,
    action_space_mismatch,
    local_protocol_version,
    space_to_dict,
)

DEFAULT_OPSET = 17
_WRAPPER_PREFIX = "ac."
_TRACE_BATCH = 2  # batch used while tracing; 2 (not 1) so no size-1 broadcast gets baked into the graph


class _StepWrapper(nn.Module):
    """Adapts ``ac.forward`` (T-major, dict state) to the flat, T-less signature of the ONNX step function."""

    def __init__(self, ac: ActorCritic, state_names: list[str]) -> None:
        super().__init__()
        self.ac = ac
        self.state_names = state_names

    def forward(self, obs: torch.Tensor, reset: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        st = dict(zip(self.state_names, state, strict=True))
        logits, value, new_state = self.ac(obs.unsqueeze(0), reset.unsqueeze(0), st)
        return (logits[0], value[0], *(new_state[n] for n in self.state_names))


@dataclass(frozen=True)
class ExportedPolicy:
    """An exported step function: the ONNX bytes, their metadata and the parameter -> initializer mapping."""

    onnx_bytes: bytes
    metadata: dict[str, Any]
    graph_sha256: str
    """Hash of the graph *structure* (weights excluded): weights-only updates are valid between equal hashes."""

    @property
    def sha256(self) -> str:
        """Hash of the exact bytes (what a receiver checks after transfer)."""
        return hashlib.sha256(self.onnx_bytes).hexdigest()

    @property
    def policy_metadata(self) -> PolicyMetadata:
        return PolicyMetadata.from_dict(self.metadata)


def _numpy_dtype_name(dtype: torch.dtype) -> str:
    return str(torch.empty((), dtype=dtype).numpy().dtype)


def graph_structure_sha256(model: onnx.ModelProto) -> str:
    """sha256 of the model with initializer *values* and metadata removed (names, shapes, dtypes and nodes kept)."""
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(model)
    del skeleton.metadata_props[:]
    for init in skeleton.graph.initializer:
        stub = onnx.TensorProto(name=init.name, dims=init.dims, data_type=init.data_type)
        init.CopyFrom(stub)
    return hashlib.sha256(skeleton.SerializeToString(deterministic=True)).hexdigest()


def _initial_value(t: torch.Tensor) -> Any:
    """One env's initial state as a JSON scalar when uniform (the usual case), else a flat list."""
    flat = t[0].detach().cpu().reshape(-1)
    if flat.numel() == 0 or bool((flat == flat[0]).all()):
        return flat[0].item() if flat.numel() else 0
    return flat.tolist()


def _used_parameters(
    ac: ActorCritic, obs: torch.Tensor, reset: torch.Tensor, state: dict[str, torch.Tensor]
) -> set[str]:
    """Parameters that influence one acting step (a backward pass finds them; unused heads etc. are left out)."""
    params = dict(ac.named_parameters())
    # Statistics the optimiser never trains (requires_grad=False, e.g. observation normalisation) are weights of
    # the step all the same: they must be initializers and travel with weights-only updates.
    trainable = {n: p.requires_grad for n, p in params.items()}
    for p in params.values():
        p.grad = None
        p.requires_grad_(True)
    try:
        with torch.enable_grad():
            logits, value, new_state = ac(obs.unsqueeze(0), reset.unsqueeze(0), state)
            total = logits.float().sum() + value.float().sum()
            for t in new_state.values():
                if t.is_floating_point():
                    total = total + t.float().sum()
            total.backward()
        used = {n for n, p in params.items() if p.grad is not None}
    finally:
        for n, p in params.items():
            p.grad = None
            p.requires_grad_(trainable[n])
    return used


def _rename_initializers(model: onnx.ModelProto) -> dict[str, str]:
    """Strip the wrapper's prefix so initializer names equal ``ac.named_parameters()`` names; returns old->new."""
    graph = model.graph
    existing = {i.name for i in graph.initializer}
    renames: dict[str, str] = {}
    for init in graph.initializer:
        if init.name.startswith(_WRAPPER_PREFIX):
            new = init.name[len(_WRAPPER_PREFIX) :]
            if new in existing:
                raise PolicyError(f"cannot rename initializer {init.name!r}: {new!r} exists already")
            renames[init.name] = new
    if not renames:
        return renames
    for init in graph.initializer:
        init.name = renames.get(init.name, init.name)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]
    for vi in [*graph.value_info, *graph.input]:
        vi.name = renames.get(vi.name, vi.name)
    return renames


def _spaces_for(ac: ActorCritic, observation_space: Any, action_space: Any) -> tuple[Any, Any]:
    """The given spaces, else the loosest ones consistent with the model (unbounded Box, Discrete(num_actions))."""
    from gymnasium import spaces

    obs_dtype = np.dtype(ac.obs_dtype)
    if observation_space is None:
        if np.issubdtype(obs_dtype, np.integer):
            info = np.iinfo(obs_dtype)
            observation_space = spaces.Box(info.min, info.max, shape=ac.obs_shape, dtype=obs_dtype)
        else:
            observation_space = spaces.Box(-np.inf, np.inf, shape=ac.obs_shape, dtype=obs_dtype)
    continuous = getattr(ac, "action_kind", "discrete") == "continuous"
    if action_space is None:
        action_space = (
            spaces.Box(-np.inf, np.inf, shape=(int(ac.num_actions),), dtype=np.float32)
            if continuous
            else spaces.Discrete(int(ac.num_actions))
        )
    if tuple(observation_space.shape) != tuple(ac.obs_shape) or np.dtype(observation_space.dtype) != obs_dtype:
        raise PolicyError(
            f"observation space {observation_space} does not match the model's obs {tuple(ac.obs_shape)} {obs_dtype}"
        )
    mismatch = action_space_mismatch(action_space, getattr(ac, "action_kind", "discrete"), int(ac.num_actions))
    if mismatch:
        raise PolicyError(f"the model's actions: {mismatch}")
    return observation_space, action_space


def export_step_function(
    ac: ActorCritic,
    *,
    policy_version: int = 0,
    opset: int = DEFAULT_OPSET,
    extra_metadata: dict[str, Any] | None = None,
    observation_space: Any = None,
    action_space: Any = None,
) -> ExportedPolicy:
    """Export ``ac`` (an actor-critic of ``models``) as a one-step ONNX function with its metadata embedded.

    ``observation_space``/``action_space`` (recorded in the metadata) default to an unbounded Box of the model's
    observation shape/dtype and ``Discrete(ac.num_actions)``. Raises :class:`PolicyError` if a parameter that
    influences the step does not end up as its own initializer (the weights-only path would silently miss it).
    """
    spec = ac.state_spec()
    state_names = list(spec)
    for name in state_names:
        if not name.isidentifier() or name.lower() != name:
            raise PolicyError(f"state names must be lower-case identifiers, got {name!r}")
    obs_space, act_space = _spaces_for(ac, observation_space, action_space)

    was_training = ac.training
    ac.eval()
    try:
        device = next(ac.parameters()).device
        obs_dtype = np.dtype(ac.obs_dtype)
        obs = torch.zeros(
            (_TRACE_BATCH, *ac.obs_shape), dtype=torch.from_numpy(np.zeros(0, obs_dtype)).dtype, device=device
        )
        reset = torch.tensor([True, False], device=device)
        state = ac.initial_state(_TRACE_BATCH)
        state = {k: v.to(device) for k, v in state.items()}
        used = _used_parameters(ac, obs, reset, state)

        wrapper = _StepWrapper(ac, state_names)
        policy_output = POLICY_OUTPUTS[getattr(ac, "action_kind", "discrete")]
        output_names = [policy_output, "value", *(STATE_OUTPUT_PREFIX + n for n in state_names)]
        input_names = ["obs", "reset", *state_names]
        dynamic_axes = {n: {0: "batch"} for n in input_names + output_names}
        buf = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (obs, reset, *(state[n] for n in state_names)),
                buf,  # type: ignore[arg-type]  # the TorchScript exporter writes to any binary file object
                dynamo=False,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=False,
                keep_initializers_as_inputs=True,
                export_params=True,
            )
    finally:
        ac.train(was_training)

    model = onnx.load_from_string(buf.getvalue())
    _rename_initializers(model)
    init_names = {i.name for i in model.graph.initializer}
    graph_inputs = [vi for vi in model.graph.input if vi.name not in init_names]
    del model.graph.input[:]
    model.graph.input.extend(graph_inputs)
    if [vi.name for vi in model.graph.input] != input_names:
        raise PolicyError(f"exported graph inputs {[vi.name for vi in model.graph.input]} != {input_names}")

    params = dict(ac.named_parameters())
    missing = sorted(n for n in used if n not in init_names)
    if missing:
        raise PolicyError(
            f"parameters {missing} influence the step but are not initializers of the exported graph; "
            "weights-only updates would miss them"
        )
    inits = {i.name: i for i in model.graph.initializer}
    for name in sorted(used):
        want = tuple(params[name].shape)
        got = tuple(inits[name].dims)
        if want != got:
            raise PolicyError(f"initializer {name!r} has shape {got}, the parameter has {want}")
        if inits[name].data_type != onnx.TensorProto.FLOAT:
            raise PolicyError(f"parameter {name!r} is not float32; weights-only updates handle float32 only")
        if not inits[name].HasField("raw_data"):  # the runtime patches weights in place of raw_data
            inits[name].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(inits[name]), name))
    weights = {n: tuple(int(s) for s in params[n].shape) for n in sorted(used)}
    init_state = ac.initial_state(1)

    graph_sha = graph_structure_sha256(model)
    meta = PolicyMetadata(
        model_kind=str(ac.cfg.kind),
        model_config=ac.cfg.to_dict(),
        observation_space=space_to_dict(obs_space),
        action_space=space_to_dict(act_space),
        obs_shape=tuple(int(s) for s in ac.obs_shape),
        obs_dtype=obs_dtype.name,
        num_actions=int(ac.num_actions),
        action_kind=str(getattr(ac, "action_kind", "discrete")),
        state=tuple(
            StateEntry(
                name=n,
                shape=tuple(int(s) for s in spec[n].shape),
                dtype=_numpy_dtype_name(spec[n].dtype),
                output=STATE_OUTPUT_PREFIX + n,
                init=_initial_value(init_state[n]),
            )
            for n in state_names
        ),
        inputs=tuple(input_names),
        outputs=tuple(output_names),
        policy_version=int(policy_version),
        protocol_version=local_protocol_version(),
        opset=int(opset),
        torch_version=torch.__version__,
        graph_sha256=graph_sha,
        weights=weights,
        extra=dict(extra_metadata or {}),
    )
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    model.producer_name = "agalite-rl export"
    onnx.checker.check_model(model, full_check=False)
    return ExportedPolicy(
        onnx_bytes=model.SerializeToString(),
        metadata=meta.to_dict(),
        graph_sha256=graph_sha,
    )


def weights_for(ac: ActorCritic, exported: ExportedPolicy) -> dict[str, np.ndarray]:
    """Current values of the exported parameters, keyed by initializer name (= parameter name), as fresh arrays.

    Copies on purpose: the runtime may hand these arrays to ONNX Runtime without copying, and the optimiser
    updates the parameters in place.
    """
    params = dict(ac.named_parameters())
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for name in exported.metadata["weights"]:
            if name not in params:
                raise PolicyError(f"parameter {name!r} of the exported graph does not exist in this model")
            t = params[name].detach()
            arr = t.cpu().numpy()
            out[name] = arr.copy() if t.device.type == "cpu" else arr
    return out


def save_policy(exported: ExportedPolicy, path: str | os.PathLike[str]) -> Path:
    """Write ``policy.onnx`` and ``policy.json`` (write then rename each); returns the ``.onnx`` path.

    ``path`` is either a directory (files ``policy.onnx``/``policy.json`` inside it) or a file name ending in
    ``.onnx`` (the JSON goes beside it with the suffix ``.json``). A reader never sees a half-written file.
    """
    p = Path(path)
    onnx_path = p if p.suffix == ".onnx" else p / "policy.onnx"
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = {**exported.metadata, "onnx_sha256": exported.sha256}
    write_atomically(onnx_path, exported.onnx_bytes)
    write_atomically(onnx_path.with_suffix(".json"), json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    return onnx_path
