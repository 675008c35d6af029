"""Wire protocol v2 between actors and the learner: messages, msgpack codec, validation, sockets.

Torch-free by rule (numpy, msgpack, pyzmq only). Typical receiver::

    try:
        msg = decode(frame)
        if isinstance(msg, Segment):
            validate_segment(msg, spec)
    except ProtocolError as exc:
        count(exc.reason, exc.sender)  # drop, never raise through the loop
"""

from protocol.codec import ARRAY_EXT, decode, decode_array, encode, encode_array
from protocol.constants import (
    DEFAULT_CONTROL_PORT,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_POLICY_PORT,
    DEFAULT_PORTS,
    DEFAULT_TRAJECTORY_PORT,
    MAX_ID_LENGTH,
    NOT_JOINED,
    PROTOCOL_VERSION,
    Channel,
)
from protocol.curve import (
    CurveClient,
    CurveKeyPair,
    CurveServer,
    apply_curve,
    generate_keypair,
    load_keypair,
    load_public_key,
    start_authenticator,
    write_keypair,
)
from protocol.errors import ProtocolError, Reason
from protocol.messages import (
    MESSAGE_TYPES,
    Bye,
    Error,
    Heartbeat,
    Hello,
    LearnerStatus,
    Message,
    ModelUpdate,
    Segment,
    Welcome,
    error_from,
)
from protocol.sockets import (
    SocketOptions,
    bind_control,
    bind_policies,
    bind_trajectories,
    bound_port,
    connect_control,
    connect_policies,
    connect_trajectories,
    create_socket,
    tcp_address,
)
from protocol.spec import SUPPORTED_DTYPES, SegmentSpec
from protocol.validate import validate_message, validate_segment

__all__ = [
    "ARRAY_EXT",
    "DEFAULT_CONTROL_PORT",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_POLICY_PORT",
    "DEFAULT_PORTS",
    "DEFAULT_TRAJECTORY_PORT",
    "MAX_ID_LENGTH",
    "MESSAGE_TYPES",
    "NOT_JOINED",
    "PROTOCOL_VERSION",
    "SUPPORTED_DTYPES",
    "Bye",
    "Channel",
    "CurveClient",
    "CurveKeyPair",
    "CurveServer",
    "Error",
    "Heartbeat",
    "Hello",
    "LearnerStatus",
    "Message",
    "ModelUpdate",
    "ProtocolError",
    "Reason",
    "Segment",
    "SegmentSpec",
    "SocketOptions",
    "Welcome",
    "apply_curve",
    "bind_control",
    "bind_policies",
    "bind_trajectories",
    "bound_port",
    "connect_control",
    "connect_policies",
    "connect_trajectories",
    "create_socket",
    "decode",
    "decode_array",
    "encode",
    "encode_array",
    "error_from",
    "generate_keypair",
    "load_keypair",
    "load_public_key",
    "start_authenticator",
    "tcp_address",
    "validate_message",
    "validate_segment",
    "write_keypair",
]
