"""Message types of wire protocol v2, as frozen dataclasses.

The annotations here are the schema: the codec and the validator read the field names and types from these
classes, so a field is written down exactly once. Constructing a message checks nothing (cheap, and lets tests
build broken ones); ``protocol.validate.validate_message`` checks, and ``encode``/``decode`` call it.

Arrays are numpy arrays; ``PlainDict`` is a msgpack-able dict of str keys to None, bool, int, finite float,
str, bytes, lists and nested PlainDicts (no arrays), used only where the content is free-form by nature (an env's
keyword arguments, policy metadata, episode records). Everything a peer acts on is a typed field.

v2 (from v1): the control plane is typed. ``Welcome`` names the run, the env, the segment length, the flow-control
share and the timeouts as fields instead of a ``settings`` dict; the actor's ``Heartbeat`` carries its env count
and segment count as fields, and the learner answers with a ``LearnerStatus`` (flow control: share and starving)
instead of a ``Heartbeat`` with a ``stats`` dict.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, TypeAlias

import numpy as np

PlainDict: TypeAlias = dict[str, Any]
ArrayDict: TypeAlias = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Hello:
    """Actor -> learner on the control channel: first message after connecting."""

    actor_id: str  # stable: from configuration or the host name
    run_id: str  # random per process start; a restarted actor is a new run
    num_envs: int  # B, the number of envs in every segment this actor sends; 0: as many as Welcome says
    host: str
    pid: int


@dataclasses.dataclass(frozen=True, eq=False)
class ModelUpdate:
    """A new policy. ``kind == "full"`` carries a whole ONNX file and ``graph_sha256`` is the sha256 of those
    bytes. ``"weights"`` carries only new initializer values, and ``graph_sha256`` names the graph they fit by its
    structure hash (the export's ``graph_sha256``, weights excluded, also found in a full update's metadata): an
    actor applies them only to a graph it already has with that structure hash, and says Hello again otherwise."""

    version: int
    kind: Literal["full", "weights"]
    onnx: bytes | None
    weights: ArrayDict | None
    graph_sha256: str  # lowercase hex: of the ONNX bytes (full) / of the graph structure (weights)
    metadata: PlainDict


@dataclasses.dataclass(frozen=True, eq=False)
class Welcome:
    """Learner -> actor in answer to Hello: what to run, how fast to send, and the current policy (always ``full``)."""

    learner_run_id: str  # random per learner process start; a different one in a LearnerStatus means a restart
    env_id: str
    env_kwargs: PlainDict
    segment_length: int  # T
    envs_per_actor: int  # B for an actor that said Hello with num_envs 0
    seed: int  # the run's seed; each actor derives its own from it and its actor_id
    heartbeat_interval_s: float  # how often the actor sends a Heartbeat
    learner_timeout_s: float  # no LearnerStatus for this long: the actor says Hello again
    segments_per_version: float  # flow control: this actor's share of one batch, in segments
    policy: ModelUpdate


@dataclasses.dataclass(frozen=True)
class Heartbeat:
    """Actor -> learner on the control channel, every ``Welcome.heartbeat_interval_s``."""

    actor_id: str
    run_id: str
    time: float  # sender's wall clock (time.time())
    policy_version: int  # the policy the actor acts with
    num_envs: int  # B of its segments
    segments_sent: int  # since the actor process started


@dataclasses.dataclass(frozen=True)
class LearnerStatus:
    """Learner -> actor in answer to each Heartbeat: liveness and flow control."""

    learner_run_id: str
    time: float  # sender's wall clock (time.time())
    policy_version: int  # the learner's current policy
    segments_per_version: float  # this actor's share of one batch, in segments (the actors' envs may not divide it)
    starving: bool  # the learner has waited for data with nothing queued: send one more segment now


@dataclasses.dataclass(frozen=True)
class Bye:
    """Actor -> learner when it leaves on purpose."""

    actor_id: str
    run_id: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Error:
    """A refusal, e.g. at Hello from a peer with another protocol version. ``code`` is a ``Reason`` value when
    the refusal comes from the protocol. Error keeps this shape in every protocol version, and is decoded
    whatever version it says, so a refusal is readable by any peer."""

    code: str
    message: str


@dataclasses.dataclass(frozen=True, eq=False)
class Segment:
    """One actor's vector of B envs over T steps, all produced by policy ``policy_version``.

    Shapes (checked by the validator): ``obs [T+1, B, *obs_shape]`` (obs[T] starts the next segment),
    ``actions [T, B, *action_shape]``, ``logp/rewards [T, B]`` float32,
    ``terminated/truncated [T, B]`` bool, ``reset [T+1, B]`` bool (obs[t] is the first of an episode),
    ``bootstrap_values [T, B]`` float32 (value of the final observation where truncated, else 0),
    ``initial_state`` name -> [B, ...] (state before consuming obs[0]).

    Envs auto-reset in the same step: when step t ends an episode, obs[t+1] is the first observation of the
    next one, so ``reset[t+1] == terminated[t] | truncated[t]`` (the validator holds senders to this).

    ``episodes``: one dict per episode that ended in this segment, with keys ``env`` (int in [0, B)),
    ``return`` (float), ``length`` (int >= 1), ``success`` (bool or None), and optionally other plain values.
    """

    actor_id: str
    run_id: str
    seq: int  # per (actor_id, run_id), counts up from 0
    policy_version: int
    obs: np.ndarray
    actions: np.ndarray
    logp: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    reset: np.ndarray
    bootstrap_values: np.ndarray
    initial_state: ArrayDict
    episodes: list[PlainDict]

    @property
    def num_steps(self) -> int:
        """T."""
        return int(self.actions.shape[0])

    @property
    def num_envs(self) -> int:
        """B."""
        return int(self.actions.shape[1])


Message: TypeAlias = Hello | Welcome | Heartbeat | LearnerStatus | Bye | Segment | ModelUpdate | Error

#: Wire name -> class. The wire name is the class name.
MESSAGE_TYPES: dict[str, type] = {
    cls.__name__: cls for cls in (Hello, Welcome, Heartbeat, LearnerStatus, Bye, Segment, ModelUpdate, Error)
}


def error_from(exc: Exception, message: str | None = None) -> Error:
    """The Error to send back for a refused message (code = the ProtocolError's reason)."""
    from protocol.errors import ProtocolError

    if isinstance(exc, ProtocolError):
        return Error(code=exc.reason.value, message=message or exc.detail)
    return Error(code="INTERNAL", message=message or f"{type(exc).__name__}: {exc}")
