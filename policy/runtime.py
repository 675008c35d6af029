"""Run an exported step function with ONNX Runtime alone (numpy + onnxruntime; torch is never imported here).

:class:`StepFunction` is a stateless session: ``run(obs, reset, state) -> (logits, value, new_state)``. It validates
every input against the policy's metadata, because a wrong shape deep inside ONNX Runtime gives an error that names
an internal node, not the caller's mistake. :class:`Policy` adds what a program that acts needs: the recurrent state
of ``B`` envs, seeded sampling outside the graph (so a run is reproducible and records the log-probability it used),
value estimates that do not advance the state, and swapping in a new policy while keeping the state.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from policy.metadata import METADATA_KEY, POLICY_OUTPUTS, PolicyError, PolicyMetadata
from policy.sampling import sample_actions, sample_gaussian
from policy.weights import replace_initializers

__all__ = ["Policy", "PolicyError", "StepFunction"]

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
    "tensor(uint8)": "uint8",
    "tensor(double)": "float64",
}


DEVICES = ("auto", "cpu", "cuda")


def providers_for(device: str, available: list[str] | None = None) -> list[str]:
    """ONNX Runtime execution providers for ``device``: ``cpu``; ``cuda`` (refused, in one sentence, when this
    onnxruntime build has no CUDA provider); ``auto``: CUDA when the build has it (onnxruntime-gpu), else CPU."""
    have = ort.get_available_providers() if available is None else list(available)
    if device not in DEVICES:
        raise PolicyError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in have:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise PolicyError(
            "device cuda needs onnxruntime-gpu (the CUDA execution provider); this onnxruntime offers "
            f"{', '.join(have)}: install onnxruntime-gpu in place of onnxruntime, or use --device cpu"
        )
    return ["CPUExecutionProvider"]


def _session_options(intra_op_threads: int, graph_optimization_level: ort.GraphOptimizationLevel) -> ort.SessionOptions:
    if intra_op_threads < 1:
        raise PolicyError(f"intra_op_threads must be >= 1, got {intra_op_threads}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = intra_op_threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = graph_optimization_level
    so.log_severity_level = 3
    return so


def _shape_fits(graph_shape: Any, per_env: tuple[int, ...]) -> bool:
    """Whether a graph tensor's declared shape is ``[batch, *per_env]``; symbolic or unknown dims fit anything."""
    if graph_shape is None:
        return True
    dims = list(graph_shape)
    if len(dims) != 1 + len(per_env):
        return False
    return all(not isinstance(d, int) or d == want for d, want in zip(dims[1:], per_env, strict=True))


def _shape_text(graph_shape: Any) -> str:
    return "unknown" if graph_shape is None else "[" + ", ".join(str(d) for d in graph_shape) + "]"


class StepFunction:
    """One ONNX Runtime session of a step function plus its metadata. Thread-compatible, not thread-safe.

    Build it with :meth:`from_bytes` or :meth:`from_file`; :meth:`with_weights` gives a new one with other weights.
    """

    def __init__(
        self,
        onnx_bytes: bytes,
        *,
        intra_op_threads: int = 1,
        providers: list[str] | None = None,
        graph_optimization_level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        check_protocol: bool = True,
        _metadata: PolicyMetadata | None = None,
    ) -> None:
        if not isinstance(onnx_bytes, (bytes, bytearray, memoryview)):
            raise PolicyError(f"onnx_bytes must be bytes, got {type(onnx_bytes).__name__}")
        self._bytes = bytes(onnx_bytes)
        self._options = dict(
            intra_op_threads=intra_op_threads,
            providers=providers,
            graph_optimization_level=graph_optimization_level,
            check_protocol=check_protocol,
        )
        so = _session_options(intra_op_threads, graph_optimization_level)
        try:
            self._session = ort.InferenceSession(
                self._bytes, sess_options=so, providers=providers or providers_for("auto")
            )
        except Exception as exc:  # onnxruntime raises several private exception types for unreadable models
            raise PolicyError(f"ONNX Runtime cannot load this policy: {exc}") from exc
        if _metadata is None:
            _metadata = self._read_metadata()
        self._meta = _metadata
        if check_protocol:
            self._meta.check_protocol()
        self._check_graph_matches_metadata()
        self._state_by_name = {s.name: s for s in self._meta.state}
        self._obs_dtype = np.dtype(self._meta.obs_dtype)
        self._output_names = [o.name for o in self._session.get_outputs()]
        self._state_outputs = [(s.name, self._output_names.index(s.output)) for s in self._meta.state]

    # -- construction ------------------------------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, onnx_bytes: bytes, **options: Any) -> StepFunction:
        """A session from the bytes of an exported ``.onnx`` (options: ``intra_op_threads``, ``providers``, ...)."""
        return cls(onnx_bytes, **options)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **options: Any) -> StepFunction:
        """A session from ``policy.onnx`` (or a directory holding one); metadata is read from inside the file."""
        p = Path(path)
        if p.is_dir():
            p = p / "policy.onnx"
        if not p.is_file():
            raise PolicyError(f"policy file {str(p)!r} does not exist")
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise PolicyError(f"cannot read policy file {str(p)!r}: {exc}") from exc
        try:
            return cls(data, **options)
        except PolicyError as exc:
            raise PolicyError(f"{p}: {exc}") from exc

    def _read_metadata(self) -> PolicyMetadata:
        props = self._session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in props:
            raise PolicyError(
                f"the ONNX model has no '{METADATA_KEY}' metadata; export it with `python -m export` "
                f"(found keys: {sorted(props)})"
            )
        return PolicyMetadata.from_json(props[METADATA_KEY])

    def _check_graph_matches_metadata(self) -> None:
        inputs = tuple(i.name for i in self._session.get_inputs())
        outputs = tuple(o.name for o in self._session.get_outputs())
        if inputs != self._meta.inputs or outputs != self._meta.outputs:
            raise PolicyError(
                f"graph and metadata disagree: graph inputs {inputs} / outputs {outputs}, metadata says "
                f"{self._meta.inputs} / {self._meta.outputs}"
            )
        types = {i.name: _ORT_TYPES.get(i.type, i.type) for i in self._session.get_inputs()}
        want = {"obs": self._meta.obs_dtype, "reset": "bool", **{s.name: s.dtype for s in self._meta.state}}
        for name, dtype in want.items():
            if types.get(name) != dtype:
                raise PolicyError(f"graph input {name!r} has type {types.get(name)}, metadata says {dtype}")
        # Shapes too: a file whose metadata names the right tensors with the wrong sizes would load, then fail
        # inside ONNX Runtime at the first step (or act with the wrong number of actions).
        meta = self._meta
        width = meta.num_actions * (2 if meta.action_kind == "continuous" else 1)
        per_env: dict[str, tuple[int, ...]] = {"obs": tuple(meta.obs_shape), "reset": ()}
        per_env.update({s.name: tuple(s.shape) for s in meta.state})
        out_per_env: dict[str, tuple[int, ...]] = {POLICY_OUTPUTS[meta.action_kind]: (width,), "value": ()}
        out_per_env.update({s.output: tuple(s.shape) for s in meta.state})
        for kind, nodes, expected in (
            ("input", self._session.get_inputs(), per_env),
            ("output", self._session.get_outputs(), out_per_env),
        ):
            for node in nodes:
                if node.name in expected and not _shape_fits(node.shape, expected[node.name]):
                    raise PolicyError(
                        f"graph {kind} {node.name!r} has shape {_shape_text(node.shape)}, metadata says "
                        f"[batch{''.join(f', {d}' for d in expected[node.name])}]"
                        + (
                            f" ({meta.num_actions} {meta.action_kind} actions)"
                            if node.name in POLICY_OUTPUTS.values()
                            else ""
                        )
                    )

    def with_weights(self, weights: Mapping[str, np.ndarray], *, policy_version: int | None = None) -> StepFunction:
        """A new session of the same graph with some or all parameters replaced (the weights-only update).

        ``weights`` maps initializer names (``metadata.weights``) to arrays of the recorded shapes; names not given
        keep this function's values. The values are copied into new model bytes (see :mod:`policy.weights` for
        why not ``add_initializer``), so the caller may reuse the arrays. Costs about as much as :meth:`from_bytes`;
        do it off the step path and swap the result in.
        """
        known = self._meta.weights
        unknown = sorted(set(weights) - set(known))
        if unknown:
            raise PolicyError(f"no weights named {unknown[:5]}{'...' if len(unknown) > 5 else ''} in this policy")
        checked: dict[str, np.ndarray] = {}
        for name, arr in weights.items():
            a = np.asarray(arr)
            if tuple(a.shape) != tuple(known[name]):
                raise PolicyError(f"weight {name!r}: expected shape {tuple(known[name])}, got {tuple(a.shape)}")
            if a.dtype != np.float32:
                raise PolicyError(f"weight {name!r}: expected dtype float32, got {a.dtype}")
            if not np.isfinite(a).all():
                raise PolicyError(f"weight {name!r} has non-finite values")
            checked[name] = a
        meta = self._meta if policy_version is None else dataclasses.replace(self._meta, policy_version=policy_version)
        return StepFunction(replace_initializers(self._bytes, checked), **self._options, _metadata=meta)

    # -- properties --------------------------------------------------------------------------------------------

    @property
    def metadata(self) -> PolicyMetadata:
        return self._meta

    @property
    def onnx_bytes(self) -> bytes:
        """The model this session runs (with the weights of :meth:`with_weights` when it came from there)."""
        return self._bytes

    @property
    def providers(self) -> list[str]:
        return self._session.get_providers()

    def initial_state(self, batch: int) -> dict[str, np.ndarray]:
        """The recurrent state of ``batch`` fresh envs."""
        return {s.name: s.initial(batch) for s in self._meta.state}

    # -- running -----------------------------------------------------------------------------------------------

    def _feeds(self, obs: np.ndarray, reset: Any, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not isinstance(obs, np.ndarray):
            raise PolicyError(f"obs must be a numpy array, got {type(obs).__name__}")
        meta = self._meta
        if obs.ndim != 1 + len(meta.obs_shape) or tuple(obs.shape[1:]) != meta.obs_shape:
            raise PolicyError(f"obs: expected shape (B, {', '.join(map(str, meta.obs_shape))}), got {obs.shape}")
        if obs.dtype != self._obs_dtype:
            raise PolicyError(f"obs: expected dtype {self._obs_dtype}, got {obs.dtype}")
        batch = obs.shape[0]
        reset_arr = np.asarray(reset)
        if reset_arr.dtype != np.bool_:
            if reset_arr.dtype.kind not in "iu":
                raise PolicyError(f"reset: expected a bool array, got dtype {reset_arr.dtype}")
            reset_arr = reset_arr.astype(np.bool_)
        if reset_arr.shape != (batch,):
            raise PolicyError(f"reset: expected shape ({batch},) to match obs, got {reset_arr.shape}")
        if not isinstance(state, Mapping):
            raise PolicyError(f"state must be a dict of arrays, got {type(state).__name__}")
        if set(state) != set(self._state_by_name):
            raise PolicyError(f"state: expected names {sorted(self._state_by_name)}, got {sorted(state)}")
        feeds = {"obs": np.ascontiguousarray(obs), "reset": reset_arr}
        for name, entry in self._state_by_name.items():
            value = state[name]
            if not isinstance(value, np.ndarray):
                raise PolicyError(f"state {name!r} must be a numpy array, got {type(value).__name__}")
            want = (batch, *entry.shape)
            if value.shape != want:
                raise PolicyError(f"state {name!r}: expected shape {want}, got {value.shape}")
            if value.dtype != np.dtype(entry.dtype):
                raise PolicyError(f"state {name!r}: expected dtype {entry.dtype}, got {value.dtype}")
            feeds[name] = value
        return feeds

    def run(
        self, obs: np.ndarray, reset: np.ndarray, state: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """One step for ``B`` envs: ``(logits[B, A], value[B], new_state)``; the inputs are not modified."""
        outs = self._session.run(self._output_names, self._feeds(obs, reset, state))
        return outs[0], outs[1], {name: outs[i] for name, i in self._state_outputs}

    @property
    def device(self) -> str:
        """Where the session computes: ``cuda`` when its first provider is CUDA's, else ``cpu``."""
        return "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"

    def state_to_device(self, state: Mapping[str, np.ndarray]) -> dict[str, ort.OrtValue]:
        """The state as ONNX Runtime values on the session's device, for :meth:`run_bound`."""
        return {k: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v), self.device, 0) for k, v in state.items()}

    def run_bound(
        self, obs: np.ndarray, reset: np.ndarray, state: Mapping[str, ort.OrtValue]
    ) -> tuple[np.ndarray, np.ndarray, dict[str, ort.OrtValue]]:
        """:meth:`run` with I/O binding: the state (made by :meth:`state_to_device`) stays on the session's device
        (the GPU under the CUDA provider) from step to step; only the observations, resets, logits and values cross
        to and from the host."""
        feeds = self._feeds(obs, reset, {k: _host_stub(v) for k, v in state.items()})
        binding = self._session.io_binding()
        binding.bind_cpu_input("obs", feeds["obs"])
        binding.bind_cpu_input("reset", feeds["reset"])
        for name in self._state_by_name:
            binding.bind_ortvalue_input(name, state[name])
        for i, name in enumerate(self._output_names):  # logits and value first (POLICY_OUTPUTS), then the state
            binding.bind_output(name, "cpu" if i < 2 else self.device)
        self._session.run_with_iobinding(binding)
        outs = binding.get_outputs()
        return outs[0].numpy(), outs[1].numpy(), {name: outs[i] for name, i in self._state_outputs}


def _host_stub(value: ort.OrtValue) -> np.ndarray:
    """A zero-stride array with the value's shape and dtype: lets :meth:`StepFunction._feeds` check a device value
    without copying it to the host."""
    dtype = _ORT_TYPES[value.data_type()]
    return np.broadcast_to(np.zeros((), dtype=dtype), tuple(value.shape()))


class Policy:
    """A step function plus the recurrent state of ``batch`` envs: what an actor or a deployment drives.

    Per step, pass ``reset[b] = True`` when ``obs[b]`` is the first observation of a new episode (also on the very
    first step); the graph clears env ``b``'s memory before using it, so the state never needs resetting by hand
    between episodes.
    """

    def __init__(self, step_function: StepFunction, batch: int = 1, *, bind_state: bool | None = None) -> None:
        """``bind_state``: keep the recurrent state in ONNX Runtime values on the session's device between steps
        (I/O binding); default: on when the session runs on a GPU, where it saves two host copies per step."""
        if batch < 1:
            raise PolicyError(f"batch must be >= 1, got {batch}")
        self._fn = step_function
        self.batch = int(batch)
        self._bound = step_function.device == "cuda" if bind_state is None else bool(bind_state)
        self._state: dict[str, np.ndarray] = {}
        self._device_state: dict[str, ort.OrtValue] = {}
        self._store(step_function.initial_state(self.batch))

    def _store(self, state: dict[str, np.ndarray]) -> None:
        if self._bound:
            self._device_state = self._fn.state_to_device(state)
        else:
            self._state = state

    def _host_state(self) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self._device_state.items()} if self._bound else self._state

    @property
    def step_function(self) -> StepFunction:
        return self._fn

    @property
    def metadata(self) -> PolicyMetadata:
        return self._fn.metadata

    @property
    def state(self) -> dict[str, np.ndarray]:
        """A copy of the current recurrent state (e.g. a segment's initial state), on the host."""
        return {k: np.array(v, copy=True) for k, v in self._host_state().items()}

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Replace the recurrent state (checked against the policy's layout); the arrays are copied."""
        fresh = self._fn.initial_state(self.batch)
        if set(state) != set(fresh):
            raise PolicyError(f"state: expected names {sorted(fresh)}, got {sorted(state)}")
        for name, ref in fresh.items():
            v = np.asarray(state[name])
            if v.shape != ref.shape or v.dtype != ref.dtype:
                raise PolicyError(f"state {name!r}: expected {ref.shape} {ref.dtype}, got {v.shape} {v.dtype}")
        self._store({k: np.array(state[k], copy=True) for k in fresh})

    def reset_state(self, envs: np.ndarray | None = None) -> None:
        """Back to the initial state, for all envs or those where the bool mask ``envs`` is true."""
        fresh = self._fn.initial_state(self.batch)
        if envs is None:
            self._store(fresh)
            return
        mask = np.asarray(envs, dtype=bool)
        if mask.shape != (self.batch,):
            raise PolicyError(f"envs mask: expected shape ({self.batch},), got {mask.shape}")
        current = self._host_state()
        self._store(
            {k: np.where(mask.reshape(-1, *([1] * (fresh[k].ndim - 1))), fresh[k], current[k]) for k in current}
        )

    def _check_batch(self, obs: np.ndarray) -> None:
        if not isinstance(obs, np.ndarray) or obs.ndim < 1 or obs.shape[0] != self.batch:
            shape = getattr(obs, "shape", None)
            raise PolicyError(f"obs: expected a batch of {self.batch} observations, got shape {shape}")

    def step(self, obs: np.ndarray, reset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance the state by one step; returns ``(policy output[B, P], value[B])`` (logits, or means and log
        stds for continuous actions)."""
        self._check_batch(obs)
        if self._bound:
            logits, value, self._device_state = self._fn.run_bound(obs, reset, self._device_state)
        else:
            logits, value, self._state = self._fn.run(obs, reset, self._state)
        return logits, value

    def act(
        self, obs: np.ndarray, reset: np.ndarray, rng: np.random.Generator, *, greedy: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance one step and sample: ``(action, logp[B] float32, value[B] float32)``; actions are ``[B]`` int64
        (discrete) or ``[B, A]`` float32 (continuous, unclipped)."""
        params, value = self.step(obs, reset)
        if self._fn.metadata.action_kind == "continuous":
            action, logp = sample_gaussian(params, rng, greedy=greedy)
        else:
            action, logp = sample_actions(params, rng, greedy=greedy)
        return action, logp, value

    def value_of(self, obs: np.ndarray, reset: np.ndarray) -> np.ndarray:
        """``V(obs)`` from the current state, without advancing it (bootstrap value of a truncated episode)."""
        self._check_batch(obs)
        if self._bound:
            return self._fn.run_bound(obs, reset, self._device_state)[1]
        _, value, _ = self._fn.run(obs, reset, self._state)
        return value

    def swap(self, step_function: StepFunction) -> None:
        """Use another policy from the next step on, keeping the recurrent state (layouts must be equal)."""
        old, new = self._fn.metadata, step_function.metadata
        if new.state_layout() != old.state_layout():
            raise PolicyError(
                f"cannot swap policies with different recurrent state: current {old.state_layout()}, "
                f"new {new.state_layout()}"
            )
        if (new.obs_shape, new.obs_dtype, new.num_actions, new.action_kind) != (
            old.obs_shape,
            old.obs_dtype,
            old.num_actions,
            old.action_kind,
        ):
            raise PolicyError(
                f"cannot swap policies with different interfaces: obs {old.obs_shape} {old.obs_dtype} / "
                f"{old.num_actions} actions vs obs {new.obs_shape} {new.obs_dtype} / {new.num_actions} actions"
            )
        self._fn = step_function
