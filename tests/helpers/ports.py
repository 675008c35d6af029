"""Free TCP ports for tests that start real servers (one helper for the whole suite)."""

from __future__ import annotations

import socket


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """n distinct TCP ports on ``host`` that were free a moment ago (all held open together while picking, so the
    n are distinct). Use ``0.0.0.0`` for ports a container will publish on every interface."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
