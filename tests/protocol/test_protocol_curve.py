"""CurveZMQ: with keys configured, only clients with an authorised public key can push or subscribe.

Rejection is observed through the server socket's monitor (a HANDSHAKE_FAILED_AUTH event), so the test
knows the intruder really tried before it checks that nothing of the intruder's arrived.
"""

from __future__ import annotations

import shutil

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from protocol import (
    Bye,
    CurveClient,
    CurveServer,
    ModelUpdate,
    bind_control,
    bind_policies,
    bind_trajectories,
    bound_port,
    connect_control,
    connect_policies,
    connect_trajectories,
    decode,
    encode,
    generate_keypair,
    load_keypair,
    load_public_key,
    start_authenticator,
    tcp_address,
    write_keypair,
)

WAIT_MS = 10_000
pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")


@pytest.fixture
def keys(tmp_path):
    """Server, authorised client and intruder key files; only the client's public key is authorised."""
    store, authorised = tmp_path / "keys", tmp_path / "authorised"
    authorised.mkdir()
    for name in ("server", "client", "intruder"):
        write_keypair(store, name)
    shutil.copy(store / "client.key", authorised / "client.key")
    return {
        "server": load_keypair(store / "server.key_secret"),
        "client": load_keypair(store / "client.key_secret"),
        "intruder": load_keypair(store / "intruder.key_secret"),
        "server_public": load_public_key(store / "server.key"),
        "authorised": authorised,
    }


@pytest.fixture
def contexts(keys):
    server_ctx, client_ctx = zmq.Context(), zmq.Context()
    auth = start_authenticator(server_ctx, keys["authorised"])
    yield server_ctx, client_ctx
    auth.stop()
    client_ctx.destroy(linger=0)
    server_ctx.destroy(linger=0)


def wait_for_auth_failure(monitor: zmq.Socket) -> None:
    while monitor.poll(WAIT_MS):
        if recv_monitor_message(monitor)["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return
    pytest.fail("the server never rejected the intruder's handshake")


def test_key_files_round_trip(tmp_path, keys):
    public_file, secret_file = write_keypair(tmp_path / "k", "node")
    pair = load_keypair(secret_file)
    assert load_public_key(public_file) == pair.public and len(pair.public) == len(pair.secret) == 40
    assert pair.secret.decode() not in repr(pair)
    with pytest.raises(ValueError):
        load_keypair(public_file)  # a public-only file has no secret
    with pytest.raises(FileNotFoundError):
        start_authenticator(zmq.Context.instance(), tmp_path / "missing")
    assert generate_keypair().public != generate_keypair().public


def test_only_authorised_clients_can_push_segments(keys, contexts):
    server_ctx, client_ctx = contexts
    pull = bind_trajectories(server_ctx, port=0, host="127.0.0.1", curve=CurveServer(keys["server"]))
    monitor = pull.get_monitor_socket()
    address = tcp_address("127.0.0.1", bound_port(pull))

    intruder = connect_trajectories(client_ctx, address, curve=CurveClient(keys["intruder"], keys["server_public"]))
    intruder.send(encode(Bye(actor_id="intruder", run_id="r", reason="should never arrive")))
    wait_for_auth_failure(monitor)

    client = connect_trajectories(client_ctx, address, curve=CurveClient(keys["client"], keys["server_public"]))
    client.send(encode(Bye(actor_id="client", run_id="r", reason="authorised")))
    assert pull.poll(WAIT_MS)
    got = decode(pull.recv())
    assert isinstance(got, Bye) and got.actor_id == "client"
    assert pull.poll(0) == 0  # the intruder's message is not waiting either


def test_only_authorised_clients_receive_policies(keys, contexts):
    server_ctx, client_ctx = contexts
    pub = bind_policies(server_ctx, port=0, host="127.0.0.1", curve=CurveServer(keys["server"]))
    monitor = pub.get_monitor_socket()
    address = tcp_address("127.0.0.1", bound_port(pub))

    intruder = connect_policies(client_ctx, address, curve=CurveClient(keys["intruder"], keys["server_public"]))
    wait_for_auth_failure(monitor)
    client = connect_policies(client_ctx, address, curve=CurveClient(keys["client"], keys["server_public"]))

    from tests.helpers.messages import make_full_update

    update = encode(make_full_update(version=9))
    for _ in range(WAIT_MS // 20):  # publish until the authorised subscriber has joined
        pub.send(update)
        if client.poll(20):
            break
    got = decode(client.recv())
    assert isinstance(got, ModelUpdate) and got.version == 9
    assert intruder.poll(0) == 0  # every copy published went to the authorised subscriber only


def test_a_control_monitor_attached_before_connecting_sees_the_whole_failed_handshake(keys, contexts):
    """A keyless DEALER to a CURVE ROUTER: the monitor sees the connection open, then fail or drop unshaken."""
    server_ctx, client_ctx = contexts
    router = bind_control(server_ctx, port=0, host="127.0.0.1", curve=CurveServer(keys["server"]))
    mask = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    dealer = connect_control(client_ctx, tcp_address("127.0.0.1", bound_port(router)), monitor_events=mask)
    monitor = dealer.get_monitor_socket()
    dealer.send(b"plaintext hello")
    events: list[int] = []
    while monitor.poll(WAIT_MS) and len(events) < 2:
        events.append(recv_monitor_message(monitor)["event"])
    assert events[0] == zmq.EVENT_CONNECTED, events
    assert events[1] in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_DISCONNECTED), events
    assert router.poll(200) == 0  # nothing of the keyless peer arrived
    dealer.disable_monitor()
    monitor.close(linger=0)
    dealer.close(linger=0)
    router.close(linger=0)
