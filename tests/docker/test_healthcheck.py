"""docker/healthcheck.py, the images' HEALTHCHECK, against real sockets and processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.helpers import compose as dt

SCRIPT = str(dt.IMAGE_FILES["/opt/agalite/healthcheck.py"])


def _check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def listener():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server
    server.close()


def _closed_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # bound, never listened: connections are refused
    return port


def test_tcp_mode_follows_the_listening_port(listener):
    port = listener.getsockname()[1]
    assert _check("tcp", "--port", str(port)).returncode == 0
    closed = _check("tcp", "--port", str(_closed_port()))
    assert closed.returncode == 1 and "unhealthy" in closed.stderr


def test_actor_mode_needs_an_established_connection_of_that_process(listener):
    port = listener.getsockname()[1]
    client = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, sys, time\n"
            "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
            "print('connected', flush=True)\n"
            "sys.stdin.read()\n",
            str(port),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdout is not None and client.stdin is not None
    try:
        assert client.stdout.readline().strip() == "connected"
        assert _check("actor", "--port", str(port), "--pid", str(client.pid)).returncode == 0
        # Another port, or another process (this one holds only the server side): unhealthy.
        assert _check("actor", "--port", str(_closed_port()), "--pid", str(client.pid)).returncode == 1
        assert _check("actor", "--port", str(port), "--pid", str(os.getpid())).returncode == 1
    finally:
        client.stdin.close()
        client.wait(timeout=30)
    gone = _check("actor", "--port", str(port), "--pid", str(client.pid))
    assert gone.returncode == 1 and "unhealthy" in gone.stderr
