"""ZeroMQ sockets for the three channels, with the options the failure model needs.

- LINGER is short, so closing a socket to a dead peer never hangs a process.
- SNDHWM/RCVHWM bound every queue: a PUSH at its high-water mark blocks the actor (backpressure) instead of
  growing memory; the policy PUB drops for slow subscribers.
- The policy SUB uses CONFLATE=1: it keeps only the newest policy. CONFLATE works only with single-part
  messages (a multipart message would be cut to its last part), which is why every message is one frame.
- MAXMSGSIZE on receiving sockets makes libzmq drop (and disconnect) a peer sending more than the limit
  before it is ever buffered whole.
- TCP keepalive and ZMTP heartbeats detect dead peers; connecting sockets reconnect by themselves.

The learner binds all three; actors always connect. Pass ``curve=`` (``protocol.curve``) to encrypt and
authenticate; it must be set before bind/connect, which these helpers take care of.
"""

from __future__ import annotations

import dataclasses
import ipaddress

import zmq

from protocol.constants import (
    DEFAULT_CONTROL_PORT,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_POLICY_PORT,
    DEFAULT_TRAJECTORY_PORT,
)
from protocol.curve import CurveClient, CurveServer, apply_curve


@dataclasses.dataclass(frozen=True)
class SocketOptions:
    """Options applied by ``create_socket``; -1 for a timeout means block forever."""

    linger_ms: int = 500
    sndhwm: int = 1000
    rcvhwm: int = 1000
    rcvtimeo_ms: int = -1
    sndtimeo_ms: int = -1
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    conflate: bool = False
    tcp_keepalive: bool = True
    heartbeat_ivl_ms: int = 2000
    heartbeat_timeout_ms: int = 10000
    reconnect_ivl_ms: int = 100
    reconnect_ivl_max_ms: int = 2000


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).version == 6
    except ValueError:
        return False


def tcp_address(host: str, port: int) -> str:
    """``tcp://host:port``; IPv6 literals get brackets, ``*`` binds every interface."""
    if not host:
        raise ValueError("host must not be empty")
    if not 0 < int(port) < 65536:
        raise ValueError(f"port must be in 1..65535, got {port}")
    if _is_ipv6(host) and not host.startswith("["):
        host = f"[{host}]"
    return f"tcp://{host}:{int(port)}"


def bound_port(sock: zmq.Socket) -> int:
    """The TCP port a socket is bound to (after bind or bind_to_random_port)."""
    endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    return int(endpoint.rsplit(":", 1)[1])


def create_socket(
    ctx: zmq.Context,
    socket_type: int,
    options: SocketOptions = SocketOptions(),
    curve: CurveServer | CurveClient | None = None,
) -> zmq.Socket:
    """A socket of ``socket_type`` with ``options`` (and CURVE) applied, not yet bound or connected."""
    sock = ctx.socket(socket_type)
    try:
        sock.setsockopt(zmq.LINGER, options.linger_ms)
        sock.setsockopt(zmq.SNDHWM, options.sndhwm)
        sock.setsockopt(zmq.RCVHWM, options.rcvhwm)
        sock.setsockopt(zmq.RCVTIMEO, options.rcvtimeo_ms)
        sock.setsockopt(zmq.SNDTIMEO, options.sndtimeo_ms)
        sock.setsockopt(zmq.MAXMSGSIZE, options.max_message_bytes)
        sock.setsockopt(zmq.RECONNECT_IVL, options.reconnect_ivl_ms)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, options.reconnect_ivl_max_ms)
        sock.setsockopt(zmq.HEARTBEAT_IVL, options.heartbeat_ivl_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, options.heartbeat_timeout_ms)
        if options.tcp_keepalive:
            sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
            sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 30)
            sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 10)
        if options.conflate:
            sock.setsockopt(zmq.CONFLATE, 1)  # single-part messages only
        if curve is not None:
            apply_curve(sock, curve)
    except BaseException:
        sock.close(linger=0)
        raise
    return sock


def _bind(sock: zmq.Socket, host: str, port: int) -> zmq.Socket:
    """Bind to ``port``, or to a random free port when ``port == 0`` (read it back with ``bound_port``)."""
    try:
        sock.setsockopt(zmq.IPV6, int(_is_ipv6(host)))
        if port == 0:
            sock.bind_to_random_port(f"tcp://{host if not _is_ipv6(host) else f'[{host}]'}")
        else:
            sock.bind(tcp_address(host, port))
    except BaseException:
        sock.close(linger=0)
        raise
    return sock


def _connect(sock: zmq.Socket, address: str) -> zmq.Socket:
    try:
        # IPv6 only for bracketed literals: enabling it everywhere breaks hosts where IPv6 is switched off
        sock.setsockopt(zmq.IPV6, int("[" in address))
        sock.connect(address)
    except BaseException:
        sock.close(linger=0)
        raise
    return sock


# ---------------------------------------------------------------- the three channels, both ends


def bind_trajectories(
    ctx: zmq.Context,
    port: int = DEFAULT_TRAJECTORY_PORT,
    host: str = "*",
    *,
    rcvhwm: int = 64,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    curve: CurveServer | None = None,
) -> zmq.Socket:
    """Learner side: PULL for segments. ``rcvhwm`` bounds queued segments per actor connection."""
    opts = SocketOptions(rcvhwm=rcvhwm, max_message_bytes=max_message_bytes)
    return _bind(create_socket(ctx, zmq.PULL, opts, curve), host, port)


def connect_trajectories(
    ctx: zmq.Context,
    address: str,
    *,
    sndhwm: int = 4,
    sndtimeo_ms: int = -1,
    curve: CurveClient | None = None,
) -> zmq.Socket:
    """Actor side: PUSH for segments. Sends block once ``sndhwm`` segments are queued (backpressure);
    set ``sndtimeo_ms`` to get ``zmq.Again`` instead of blocking forever while the learner is away."""
    opts = SocketOptions(sndhwm=sndhwm, sndtimeo_ms=sndtimeo_ms)
    return _connect(create_socket(ctx, zmq.PUSH, opts, curve), address)


def bind_policies(
    ctx: zmq.Context,
    port: int = DEFAULT_POLICY_PORT,
    host: str = "*",
    *,
    sndhwm: int = 4,
    curve: CurveServer | None = None,
) -> zmq.Socket:
    """Learner side: PUB for ModelUpdate. A subscriber too slow to take ``sndhwm`` updates misses some,
    which is harmless: only the newest policy matters."""
    return _bind(create_socket(ctx, zmq.PUB, SocketOptions(sndhwm=sndhwm), curve), host, port)


def connect_policies(
    ctx: zmq.Context,
    address: str,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    curve: CurveClient | None = None,
) -> zmq.Socket:
    """Actor side: SUB with CONFLATE=1 subscribed to everything: a read returns the newest policy received,
    older unread ones are gone."""
    opts = SocketOptions(conflate=True, max_message_bytes=max_message_bytes)
    sock = create_socket(ctx, zmq.SUB, opts, curve)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    return _connect(sock, address)


#: The control channel carries small messages in (Hello, Heartbeat, Bye: well under a kilobyte) and at most a few
#: replies out per peer at a time, one of which (Welcome) holds a whole policy. Small limits keep a peer that
#: floods or never reads from holding more than a few policies' worth of memory.
CONTROL_MAX_MESSAGE_BYTES: int = 256 * 1024
CONTROL_SNDHWM: int = 4
CONTROL_RCVHWM: int = 64


def bind_control(
    ctx: zmq.Context,
    port: int = DEFAULT_CONTROL_PORT,
    host: str = "*",
    *,
    max_message_bytes: int = CONTROL_MAX_MESSAGE_BYTES,
    curve: CurveServer | None = None,
) -> zmq.Socket:
    """Learner side: ROUTER for Hello/Welcome/Heartbeat/LearnerStatus/Bye/Error. Frames are
    ``[peer identity, message]``; replies to a peer that has gone are dropped silently (ROUTER default)."""
    opts = SocketOptions(max_message_bytes=max_message_bytes, sndhwm=CONTROL_SNDHWM, rcvhwm=CONTROL_RCVHWM)
    return _bind(create_socket(ctx, zmq.ROUTER, opts, curve), host, port)


def connect_control(
    ctx: zmq.Context,
    address: str,
    *,
    rcvtimeo_ms: int = -1,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    curve: CurveClient | None = None,
    monitor_events: int = 0,
) -> zmq.Socket:
    """Actor side: DEALER; messages are single frames. ``rcvtimeo_ms`` bounds a blocking wait for Welcome.

    ``monitor_events`` attaches the monitor (``sock.get_monitor_socket()`` returns it) before connecting: a handshake
    on loopback can fail before a monitor attached after ``connect`` would see it.
    """
    opts = SocketOptions(rcvtimeo_ms=rcvtimeo_ms, max_message_bytes=max_message_bytes)
    sock = create_socket(ctx, zmq.DEALER, opts, curve)
    if monitor_events:
        sock.get_monitor_socket(monitor_events)
    return _connect(sock, address)
