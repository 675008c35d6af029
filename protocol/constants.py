"""Protocol version, channel names, default ports and size limits.

These are the only numbers an actor and a learner must agree on before they can talk; everything else
(run settings, the policy) travels in messages. Kept in one module so a version bump is one edit.
"""

from __future__ import annotations

import enum

#: Major version of the wire format. Peers with different major versions refuse each other at Hello.
PROTOCOL_VERSION: int = 2


class Channel(enum.StrEnum):
    """The three sockets between an actor and the learner (the learner binds all three)."""

    TRAJECTORIES = "trajectories"  # actor PUSH -> learner PULL: Segment
    POLICIES = "policies"  # learner PUB -> actor SUB (conflated): ModelUpdate
    CONTROL = "control"  # actor DEALER <-> learner ROUTER: Hello, Welcome, Heartbeat, LearnerStatus, Bye, Error


#: Default TCP ports, one per channel; all are configurable.
DEFAULT_PORTS: dict[Channel, int] = {
    Channel.TRAJECTORIES: 5555,
    Channel.POLICIES: 5556,
    Channel.CONTROL: 5557,
}
DEFAULT_TRAJECTORY_PORT: int = DEFAULT_PORTS[Channel.TRAJECTORIES]
DEFAULT_POLICY_PORT: int = DEFAULT_PORTS[Channel.POLICIES]
DEFAULT_CONTROL_PORT: int = DEFAULT_PORTS[Channel.CONTROL]

#: Largest encoded message accepted by default (64 MiB). A full policy update of the paper-size model is
#: 2-4 MB of ONNX; a pixel-observation segment (T=128, B=16, 64x64x3 uint8) is about 25 MB.
DEFAULT_MAX_MESSAGE_BYTES: int = 64 * 1024 * 1024

#: Longest identifier (actor_id, run_id, sender_id) accepted; ids end up in metric names and logs.
MAX_ID_LENGTH: int = 256

#: ``Error.code`` of the learner's answer to a Heartbeat from an actor run it does not count as joined (it went
#: silent and expired, or the learner restarted): the actor says Hello again.
NOT_JOINED: str = "NOT_JOINED"
